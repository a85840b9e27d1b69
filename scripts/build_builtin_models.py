"""Build Easel's built-in models from the Fluent Emoji Flat set, end to end.

    python scripts/build_builtin_models.py bundle          # npm pack -> resources/datasets (.xz)
    python scripts/build_builtin_models.py data            # rasterise (QtSvg) -> .npz
    python scripts/build_builtin_models.py embed           # MiniLM caption embeddings -> .npz
    python scripts/build_builtin_models.py ldm --minutes M # train the autoencoder + latent UNet
    python scripts/build_builtin_models.py dalle --steps N # VQ tokenizer + transformer (runner)
    python scripts/build_builtin_models.py gallery --model DIR  # dalle: re-ranking gallery
    python scripts/build_builtin_models.py concepts --model DIR --strength S  # known concepts
    python scripts/build_builtin_models.py guide --model DIR --weak OLD --scale A  # autoguidance
    python scripts/build_builtin_models.py gallery --model DIR --beside 1200 --candidates N
    python scripts/build_builtin_models.py cards           # FID / faithfulness -> model cards

The rasterising step lives here, not in the engine, because it needs Qt (QtSvg) and the engine
never imports Qt. Everything else is the engine's own code.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))  # its sibling builtin_sidecars, when imported
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import builtin_decoder  # noqa: E402
from builtin_sidecars import (  # noqa: E402
    caption_embeddings,
    cmd_concepts,
    cmd_gallery,
    cmd_guide,
    to_tensor,
)

from engine.datasets import emoji  # noqa: E402


def cmd_data(args) -> None:
    """Render the shipped emoji bodies (as a user install does on first use)."""
    from PySide6.QtGui import QGuiApplication

    from desktop.emoji_render import render

    _app = QGuiApplication.instance() or QGuiApplication([])
    start = time.perf_counter()
    path = render(args.resolution, args.cache)
    data = emoji.load_rendered(args.cache, args.resolution)
    held = int(data.held_out.sum())
    print(
        f"{len(data.names)} emoji ({held} held out) -> {path} in {time.perf_counter() - start:.1f}s"
    )


def cmd_bundle(args) -> None:
    """`npm pack` the emoji package and pack its bodies into resources/datasets (0.7 MB)."""
    package = emoji.fetch_package(args.cache)
    target = emoji.write_bundled(package)
    print(f"{target} ({target.stat().st_size / 1e6:.2f} MB)")


# ---------------------------------------------------------------------------------------------
# Latent diffusion: autoencoder, then the text-conditioned latent UNet (time-budgeted phases)

SAMPLE_PROMPTS = (
    "a red apple",
    "cat face",
    "a red fruit",
    "kitty",
    "smiling face",
    "rocket",
    "dog face",
    "pizza",
    "a blue heart",
    "sun",
    "house",
    "thumbs up",
    "crying face",
    "christmas tree",
    "car",
    "ghost",
)


def log(path: Path, message: str) -> None:
    line = f"{time.strftime('%H:%M:%S')} {message}"
    print(line, flush=True)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line + "\n")


def train_autoencoder(ae, images, minutes: float, logfile: Path, seed: int, max_steps=None) -> int:
    from engine.training.diffusion import AutoencoderStepper, random_crops

    stepper = AutoencoderStepper(ae, lr=1e-3, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    while time.perf_counter() - start < minutes * 60:
        if max_steps is not None and stepper.steps_done >= max_steps:
            break
        idx = torch.randint(0, len(images), (32,), generator=gen)
        out = stepper.step(random_crops(images[idx], 32, gen))
        if stepper.steps_done % 50 == 0:
            log(logfile, f"ae step {stepper.steps_done} l1 {out['l1']:.4f} kl {out['kl']:.1f}")
    return stepper.steps_done


def export_ldm(out: Path, model, stepper, config: dict, summary: dict) -> None:
    from engine.training.checkpoint import save_model

    state = {f"unet.{k}": v for k, v in stepper.ema.state_dict().items()}
    state.update({f"autoencoder.{k}": v for k, v in model.autoencoder.state_dict().items()})
    config = {**config, "training": summary}
    save_model(out, state, config)


def cmd_ldm(args) -> None:
    from engine.families import ldm
    from engine.families.ddpm import Schedule, ScheduleConfig
    from engine.training.diffusion import OptimConfig, UNetStepper, encode_latents

    if args.decay_steps and args.steps is None:
        raise SystemExit("--decay-steps needs --steps: the cool-down ends at the last step")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    out, logfile = args.out, args.out / "train.log"
    out.mkdir(parents=True, exist_ok=True)
    data = emoji.load_rendered(args.cache, args.resolution).train()
    images = to_tensor(data.images)
    embeddings = caption_embeddings(data.names, args.cache)
    log(logfile, f"{len(images)} training emoji, embeddings {tuple(embeddings.shape)}")
    config = ldm.DEFAULTS | {"family": "ldm", "format": 1, "resolution": args.resolution}
    config |= {"conditioning": "text", "text_encoder": "all-MiniLM-L6-v2"}
    config["unet"] = {**config["unet"], "conditioning": "text", "cond_dim": 384}
    if args.base_channels is not None:  # e.g. a small UNet to autoguide the shipped one with
        config["unet"]["base_channels"] = args.base_channels
    shipped = args.init_from or args.ae_from  # the folder whose latent space this run uses
    if shipped is not None:  # its autoencoder's shape too (a retuned decoder may be wider)
        config["autoencoder"] = json.loads((shipped / "config.json").read_text())["autoencoder"]
    model = ldm.build(config)
    ae_file = out / "autoencoder.pt.safetensors"
    from safetensors.torch import load_file, save_file

    if shipped is not None and not ae_file.is_file():
        init_autoencoder_from(model, shipped, ae_file, out)
    if ae_file.is_file():
        model.autoencoder.load_state_dict(load_file(str(ae_file)))
        ae_steps = int(json.loads((out / "ae.json").read_text())["steps"])
    else:
        ae_steps = train_autoencoder(
            model.autoencoder, images, args.ae_minutes, logfile, args.seed, args.ae_steps
        )
        save_file(model.autoencoder.state_dict(), str(ae_file))
        (out / "ae.json").write_text(json.dumps({"steps": ae_steps}))
    model.autoencoder.requires_grad_(False).eval()
    latents = encode_latents(model.autoencoder, images)
    scale = float(1.0 / latents.std())
    if shipped is not None:  # the UNet learns (or learnt) latents at the shipped scale
        scale = float(json.loads((shipped / "config.json").read_text())["latent_scale"])
    config["latent_scale"] = model.latent_scale = scale
    latents = latents * scale
    log(logfile, f"latents {tuple(latents.shape)} scale {scale:.4f}")
    schedule = Schedule(ScheduleConfig.from_dict(config["schedule"]))
    optim = OptimConfig(
        lr=args.lr,
        ema_decay=args.ema_decay,
        cond_drop=0.15,
        warmup_steps=100,
        snr_gamma=args.snr_gamma or None,  # 0: the plain objective
        decay_steps=args.decay_steps,
        decay_end=args.steps if args.decay_steps else None,
    )
    config |= {"snr_gamma": optim.snr_gamma, "ema_decay": args.ema_decay}
    stepper = UNetStepper(model.unet, schedule, optim, seed=args.seed)
    resume_state = out / "unet-state.safetensors"
    if resume_state.is_file():
        load_stepper(stepper, load_file(str(resume_state)))
        log(logfile, f"resumed at unet step {stepper.steps_done}")
    elif args.init_from is not None:
        init_unet_from(stepper, args.init_from)
        log(logfile, f"started from {args.init_from} at unet step {stepper.steps_done}")
    gen = torch.Generator().manual_seed(args.seed + stepper.steps_done)
    start = last_save = time.perf_counter()
    losses = []
    while time.perf_counter() - start < args.minutes * 60:
        if args.steps is not None and stepper.steps_done >= args.steps:
            break
        idx = torch.randint(0, len(latents), (args.batch,), generator=gen)
        template = torch.randint(0, embeddings.shape[0], (args.batch,), generator=gen)
        losses.append(stepper.step(latents[idx], embeddings[template, idx])["loss"])
        if stepper.steps_done % 25 == 0:
            log(logfile, f"unet step {stepper.steps_done} loss {np.mean(losses[-25:]):.4f}")
        if time.perf_counter() - last_save > args.save_minutes * 60:
            save_all(out, model, stepper, config, ae_steps, losses, start, logfile)
            last_save = time.perf_counter()
    save_all(out, model, stepper, config, ae_steps, losses, start, logfile)


def init_autoencoder_from(model, folder: Path, ae_file: Path, out: Path) -> None:
    """Take a shipped model's autoencoder as this run's (its latents are what the UNet knows)."""
    from safetensors.torch import load_file, save_file

    state = load_file(str(folder / "model.safetensors"))
    prefix = "autoencoder."
    ae = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    model.autoencoder.load_state_dict(ae)
    save_file(model.autoencoder.state_dict(), str(ae_file))
    trained = json.loads((folder / "config.json").read_text())["training"]
    (out / "ae.json").write_text(json.dumps({"steps": trained["autoencoder_steps"]}))


def init_unet_from(stepper, folder: Path) -> None:
    """Continue from a shipped model's (EMA) UNet when its optimiser state is gone: the weights
    seed both the trained copy and the EMA; Adam restarts (the warm-up steps cover that)."""
    from safetensors.torch import load_file

    state = load_file(str(folder / "model.safetensors"))
    unet = {k[len("unet.") :]: v for k, v in state.items() if k.startswith("unet.")}
    stepper.model.load_state_dict(unet)
    stepper.ema.load_state_dict(unet)
    trained = json.loads((folder / "config.json").read_text())["training"]
    stepper.steps_done = stepper.warmup_from = int(trained["unet_steps"])


def load_stepper(stepper, tensors) -> None:
    from engine.training.checkpoint import load_module_tensors, load_optimizer_tensors

    load_module_tensors(stepper.model, tensors, "model")
    load_module_tensors(stepper.ema, tensors, "ema")
    load_optimizer_tensors(stepper.optimizer, tensors, "optim")
    stepper.steps_done = int(tensors["steps_done"].item())


def save_all(out, model, stepper, config, ae_steps, losses, start, logfile) -> None:
    from safetensors.torch import save_file

    from engine.training.checkpoint import module_tensors, optimizer_tensors

    tensors = {**module_tensors(stepper.model, "model"), **module_tensors(stepper.ema, "ema")}
    tensors.update(optimizer_tensors(stepper.optimizer, "optim"))
    tensors["steps_done"] = torch.tensor(stepper.steps_done)
    save_file(tensors, str(out / "unet-state.safetensors.tmp"))
    (out / "unet-state.safetensors.tmp").replace(out / "unet-state.safetensors")
    summary = {
        "autoencoder_steps": ae_steps,
        "unet_steps": stepper.steps_done,
        "final_loss": float(np.mean(losses[-100:])) if losses else None,
        "session_minutes": (time.perf_counter() - start) / 60,
    }
    export_ldm(out, model, stepper, config, summary)
    log(logfile, f"saved model at unet step {stepper.steps_done}")


def prompt_grid(
    model: Path, prompts, *, seed: int, guidance: float, steps: int, scale: int = 2, candidates=1
):
    """One picture per prompt through the engine's own generation path, captioned, in a grid
    (`candidates` > 1: the dalle family's best of that many, re-ranked)."""
    from PIL import Image, ImageDraw

    from engine.api import GenerationRequest, RuntimeOptions
    from engine.context import JobContext
    from engine.generate import run_generation

    ctx = JobContext(0, lambda event: None)
    cell, label = 64 * scale, 14
    columns = 4
    rows = (len(prompts) + columns - 1) // columns
    grid = Image.new("RGB", (columns * cell, rows * (cell + label)), "white")
    draw = ImageDraw.Draw(grid)
    for i, prompt in enumerate(prompts):
        request = GenerationRequest(
            model=str(model),
            prompt=prompt,
            seed=seed + i,
            steps=steps,
            sampler="DDIM",
            guidance_scale=guidance,
            extras={"candidates": candidates} if candidates > 1 else {},
            runtime=RuntimeOptions(cpu_threads=torch.get_num_threads()),
        )
        image = run_generation(request, ctx).images[0].resize((cell, cell), Image.NEAREST)
        x, y = (i % columns) * cell, (i // columns) * (cell + label)
        grid.paste(image, (x, y))
        draw.text((x + 2, y + cell), prompt[:22], fill="black")
    return grid


def cmd_samples(args) -> None:
    torch.set_num_threads(args.threads)
    prompts = args.prompts or list(SAMPLE_PROMPTS)
    grid = prompt_grid(
        args.model,
        prompts,
        seed=args.seed,
        guidance=args.guidance,
        steps=args.steps,
        candidates=args.candidates,
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    grid.save(args.output)
    print(f"wrote {args.output}")


# ---------------------------------------------------------------------------------------------
# DALL-E family: trained by the shared runner (the `easel train --family dalle` path), with a
# time box as a safety net: past `--minutes` the run is cancelled, which saves and exports it


def cmd_dalle(args) -> None:
    import threading

    from engine.api import RuntimeOptions, TrainingRequest
    from engine.cli.train import parse_settings
    from engine.context import JobContext
    from engine.errors import JobCancelled
    from engine.training.runner import run_training

    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    logfile = args.out / "train.log"
    extras = {
        "tokenizer_steps": args.tokenizer_steps,
        "caption_templates": list(emoji.CAPTION_TEMPLATES),
        "title": "emoji-dalle",
        **parse_settings(args.set or []),
    }
    request = TrainingRequest(
        family="dalle",
        data_dir="builtin:emoji",
        out_dir=str(args.out),
        steps=args.steps,
        batch_size=args.batch,
        learning_rate=args.lr or 0.0,  # 0: the config's; a request field, a resume may change it
        seed=args.seed,
        resume=args.resume,
        sample_every=args.sample_every,
        # mirrored emoji would contradict their names ("backhand index pointing left")
        flip=False,
        extras=extras,
        runtime=RuntimeOptions(cpu_threads=args.threads),
    )
    if args.init_from is not None and not args.resume:
        seed_dalle_checkpoint(args.out, args.init_from, request)
        request = request.replace(resume=True)
    cancel = threading.Event()
    timer = threading.Timer(args.minutes * 60, cancel.set)
    timer.daemon = True
    timer.start()

    def sink(event) -> None:
        info = getattr(event, "info", None) or {}
        step = getattr(event, "step", 0)
        if type(event).__name__ == "Progress" and step % 25 == 0 and "loss" in info:
            parts = " ".join(f"{k} {v:.4f}" for k, v in (info.get("losses") or {}).items())
            log(logfile, f"step {step} loss {info['loss']:.4f} {parts}")

    try:
        result = run_training(request, JobContext(0, sink, cancel_event=cancel))
        log(logfile, f"done: {result.info['steps']} steps in {result.info['elapsed_s']:.0f} s")
    except JobCancelled:
        log(logfile, "time box reached: the run was saved and exported where it stopped")
    finally:
        timer.cancel()


def seed_dalle_checkpoint(out: Path, init_from: Path, request) -> None:
    """A checkpoint that starts a run from a shipped emoji-dalle: its tokenizer is final (the
    step counter says stage 1 is done, so its codes stay the ones the weights were trained on)
    and the transformer goes on from the shipped weights with a fresh AdamW, as `ldm
    --init-from` does for the UNet."""
    from safetensors.torch import load_file

    from engine.training.dalle import DalleTrainer
    from engine.training.runner import RunState, save_run_checkpoint

    config = json.loads((init_from / "config.json").read_text())
    config.pop("format", None)
    # --set settings that leave the weights' shapes alone (dropout, learning rate) apply
    config.update({k: v for k, v in request.extras.items() if k in config})
    trainer = DalleTrainer(request, config, torch.device("cpu"))
    trainer.model.load_state_dict(load_file(str(init_from / "model.safetensors")))
    start = RunState(step=int(config["tokenizer_steps"]))
    save_run_checkpoint(out, trainer, start, request)
    log(out / "train.log", f"started from {init_from} at step {start.step}")


# ---------------------------------------------------------------------------------------------
# Ship: copy a trained folder into resources/models/ with its samples and training record

SHIPPED_FILES = ("config.json", "model.safetensors")


def runner_record(source: Path) -> dict:
    """Steps, wall time and final loss of a run made by the shared training runner."""
    state = json.loads((source / "checkpoint" / "state.json").read_text(encoding="utf-8"))
    losses = state.get("losses") or [float("nan")]
    return {
        "steps": int(state["step"]),
        "wall_time_s": float(state["elapsed_s"]),
        "final_loss": round(float(np.mean(losses[-100:])), 4),
    }


def training_seconds(clock_times, idle_gap_s: float = 600.0) -> float:
    """Time spent training, from the log's HH:MM:SS stamps: a gap over `idle_gap_s` between two
    lines is a pause between sessions (the run was stopped and resumed later), not counted."""
    to_s = lambda hms: sum(int(x) * m for x, m in zip(hms.split(":"), (3600, 60, 1), strict=True))  # noqa: E731
    stamps = [to_s(t) for t in clock_times]
    gaps = [(b - a) % 86400 for a, b in zip(stamps, stamps[1:], strict=False)]
    return float(sum(g for g in gaps if g <= idle_gap_s))


def ldm_record(source: Path) -> dict:
    config = json.loads((source / "config.json").read_text(encoding="utf-8"))
    summary = config["training"]
    log_lines = (source / "train.log").read_text(encoding="utf-8").splitlines()
    return {
        "steps": int(summary["unet_steps"]),
        "autoencoder_steps": int(summary["autoencoder_steps"]),
        "wall_time_s": training_seconds(line.split()[0] for line in log_lines if line.strip()),
        "final_loss": round(float(summary["final_loss"]), 4),
    }


def cmd_ship(args) -> None:
    import shutil

    dest = ROOT / "resources" / "models" / args.name
    (dest / "samples").mkdir(parents=True, exist_ok=True)
    for name in SHIPPED_FILES:
        shutil.copy2(args.source / name, dest / name)
    if args.family in ("ldm", "dalle"):  # the text-to-image models: the 16-prompt grid
        grid = prompt_grid(dest, list(SAMPLE_PROMPTS), seed=0, guidance=3.0, steps=20)
        grid.save(dest / "samples" / "prompts.png")
    if args.family == "ldm":
        record = ldm_record(args.source)
    else:
        record = runner_record(args.source)
        grids = sorted((args.source / "samples").glob("*.png"))
        final = args.source / "samples" / "final.png"
        shutil.copy2(final if final.is_file() else grids[-1], dest / "samples" / "grid.png")
    data = emoji.load_rendered(args.cache, args.resolution)
    record.update(
        family=args.family,
        command=args.command,
        batch=args.batch,
        images=int((~data.held_out).sum()),
        held_out=int(data.held_out.sum()),
        notes=args.note or [],
    )
    if args.machine:
        record["machine"] = args.machine
    (dest / "training.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(f"shipped {args.source} -> {dest}: {record}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=None, help="dataset cache folder")
    sub = parser.add_subparsers(dest="command", required=True)
    data = sub.add_parser("data", help="rasterise the shipped emoji bodies")
    data.add_argument("--resolution", type=int, default=64)
    data.set_defaults(run=cmd_data)
    bundle = sub.add_parser("bundle", help="npm pack the emoji package into resources/datasets")
    bundle.set_defaults(run=cmd_bundle)
    train = sub.add_parser("ldm", help="train the text-to-image latent diffusion model")
    train.add_argument("--out", type=Path, default=ROOT / "resources" / "models" / "emoji-ldm")
    train.add_argument("--resolution", type=int, default=64)
    train.add_argument("--ae-minutes", type=float, default=10.0)
    train.add_argument("--minutes", type=float, default=60.0, help="UNet training time")
    train.add_argument("--ae-steps", type=int, help="stop the autoencoder after N steps")
    train.add_argument("--steps", type=int, help="stop the UNet after N steps (total)")
    train.add_argument("--save-minutes", type=float, default=4.0)
    train.add_argument("--batch", type=int, default=32)
    train.add_argument("--lr", type=float, default=5e-4)
    train.add_argument("--ema-decay", type=float, default=0.999)
    train.add_argument(
        "--decay-steps", type=int, help="cool the learning rate linearly to 0 over the last N steps"
    )
    train.add_argument(
        "--snr-gamma", type=float, default=5.0, help="min-SNR loss weighting (0: off)"
    )
    train.add_argument("--threads", type=int, default=1)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument(
        "--init-from", type=Path, help="continue from a shipped model folder (weights only)"
    )
    train.add_argument(
        "--ae-from", type=Path, help="a fresh UNet on a shipped model folder's autoencoder"
    )
    train.add_argument("--base-channels", type=int, help="the UNet's first width (default 32)")
    train.set_defaults(run=cmd_ldm)
    samples = sub.add_parser("samples", help="a captioned grid of prompts from a text model")
    samples.add_argument("--model", type=Path, default=ROOT / "resources" / "models" / "emoji-ldm")
    samples.add_argument("--output", type=Path, required=True)
    samples.add_argument("--prompts", nargs="*")
    samples.add_argument("--seed", type=int, default=0)
    samples.add_argument("--guidance", type=float, default=3.0)
    samples.add_argument("--steps", type=int, default=20)
    samples.add_argument("--threads", type=int, default=1)
    samples.add_argument("--candidates", type=int, default=1, help="dalle: re-rank N per prompt")
    samples.set_defaults(run=cmd_samples)
    dalle = sub.add_parser("dalle", help="train the DALL-E-style model (tokenizer + transformer)")
    dalle.add_argument("--out", type=Path, default=Path("build/emoji-dalle"))
    dalle.add_argument("--steps", type=int, default=3000, help="tokenizer + transformer steps")
    dalle.add_argument("--tokenizer-steps", type=int, default=800)
    dalle.add_argument("--minutes", type=float, default=60.0, help="time box (safety net)")
    dalle.add_argument("--batch", type=int, default=32)
    dalle.add_argument("--lr", type=float, help="transformer learning rate (default: config's)")
    dalle.add_argument("--sample-every", type=int, default=500)
    dalle.add_argument("--resume", action="store_true")
    dalle.add_argument(
        "--init-from", type=Path, help="continue from a shipped model folder (tokenizer kept)"
    )
    dalle.add_argument("--threads", type=int, default=1)
    dalle.add_argument("--seed", type=int, default=0)
    dalle.add_argument(
        "--set",
        action="append",
        metavar="KEY=JSON",
        help="a config setting, e.g. --set 'tokenizer={\"channels\": [64, 128]}' (repeatable)",
    )
    dalle.set_defaults(run=cmd_dalle)
    gallery = sub.add_parser("gallery", help="store a re-ranking gallery in a model folder")
    gallery.add_argument("--model", type=Path, required=True)
    gallery.add_argument(
        "--beside",
        type=int,
        metavar="N",
        help="N training emoji outside the measuring gallery, in rerank-gallery.safetensors "
        "(any family); without it the cards' 600 go into a dalle folder's weights",
    )
    gallery.add_argument("--candidates", type=int, help="the model's default candidates")
    gallery.set_defaults(run=cmd_gallery)
    concepts = sub.add_parser("concepts", help="store the training captions as known concepts")
    concepts.add_argument("--model", type=Path, required=True)
    concepts.add_argument("--strength", type=float, help="the model's default concept_strength")
    concepts.add_argument(
        "--neighbours", type=int, help="known concepts a prompt is steered to (default 4)"
    )
    concepts.set_defaults(run=cmd_concepts)
    guide = sub.add_parser("guide", help="store a weaker checkpoint's UNet for autoguidance")
    guide.add_argument("--model", type=Path, required=True)
    guide.add_argument("--weak", type=Path, required=True, help="model or build folder")
    guide.add_argument("--scale", type=float, help="the model's default autoguidance")
    guide.set_defaults(run=cmd_guide)
    builtin_decoder.add_parser(sub)
    ship = sub.add_parser("ship", help="copy a trained model into resources/models/")
    ship.add_argument("--name", required=True)
    ship.add_argument("--family", required=True, choices=("ldm", "dalle", "dcgan", "beta-vae"))
    ship.add_argument("--source", type=Path, required=True)
    ship.add_argument("--command", required=True, help="the command that reproduces it")
    ship.add_argument("--batch", type=int, default=32)
    ship.add_argument("--resolution", type=int, default=64)
    ship.add_argument("--note", action="append")
    ship.add_argument("--machine", help="where it was trained, for the card")
    ship.set_defaults(run=cmd_ship)
    args = parser.parse_args(argv)
    args.run(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
