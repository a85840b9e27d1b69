"""Train a native model (GAN, VAE, diffusion) on a folder of pictures.

`easel train --family vae --data pics/ --out models/my-vae --steps 2000` prints one progress
line (step, loss, images/s, time left), saves sample grids under OUT/samples/ and a resumable
checkpoint; Ctrl-C cancels, saving a checkpoint that `--resume` continues (exit code 130).
The result is a model folder that `easel generate --model OUT` samples from.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time

from engine.errors import EaselError, InputError, ModelError, OutputError

FAMILIES = ("dcgan", "stylegan", "cyclegan", "vae", "beta-vae", "nvae", "ddpm", "ldm")
EXIT_CODES = {
    "InputError": InputError.exit_code,
    "ModelError": ModelError.exit_code,
    "OutputError": OutputError.exit_code,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--family", required=True, choices=FAMILIES, help="model family")
    parser.add_argument("--data", required=True, help="folder of pictures, or builtin:NAME")
    parser.add_argument("--data-b", help="second folder of pictures (cyclegan: domain B)")
    parser.add_argument("--out", required=True, help="folder to save the trained model in")
    parser.add_argument("--steps", type=int, default=1000, help="training steps (default 1000)")
    parser.add_argument("--resolution", type=int, default=64, help="picture size (default 64)")
    parser.add_argument("--batch", type=int, default=16, help="batch size (default 16)")
    parser.add_argument("--lr", type=float, default=0.0, help="learning rate (0: family default)")
    parser.add_argument("--sample-every", type=int, default=200, help="steps between grids")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    parser.add_argument("--no-flip", action="store_true", help="no random horizontal flips")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="family setting, e.g. --set beta=8 --set latent_dim=32 (see the model card/config)",
    )
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: all cores)")


def parse_settings(pairs: list[str]) -> dict:
    """`KEY=VALUE` strings -> dict; VALUE is read as JSON when it parses (numbers, lists)."""
    extras = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--set expects KEY=VALUE (got '{pair}').")
        try:
            extras[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            extras[key.strip()] = value
    return extras


def build_request(args: argparse.Namespace):
    from engine.api import RuntimeOptions, TrainingRequest

    return TrainingRequest(
        family=args.family,
        data_dir=args.data,
        data_dir_b=args.data_b,
        out_dir=args.out,
        steps=args.steps,
        resolution=args.resolution,
        batch_size=args.batch,
        learning_rate=args.lr,
        seed=args.seed,
        resume=args.resume,
        sample_every=args.sample_every,
        flip=not args.no_flip,
        extras=parse_settings(args.set),
        runtime=RuntimeOptions(device=args.device, cpu_threads=args.threads),
    )


def format_progress(step: int, total: int, info: dict) -> str:
    parts = [f"step {step}/{total}"]
    if "loss" in info:
        parts.append(f"loss {info['loss']:.4f}")
    if "images_per_s" in info:
        parts.append(f"{info['images_per_s']:.1f} img/s")
    if "seconds_left" in info:
        parts.append(f"{_duration(info['seconds_left'])} left")
    return "  ".join(parts)


def _duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


def run(args: argparse.Namespace) -> int:
    from engine.cli import EXIT_CANCELLED, EXIT_FAILED, EXIT_OK
    from engine.events import Cancelled, Failed, Progress, Result
    from engine.worker import Engine

    try:
        request = build_request(args)
    except EaselError as exc:
        print(f"easel train: {exc}", file=sys.stderr)
        return exc.exit_code
    done = threading.Event()
    final: list = []
    interactive = sys.stderr.isatty()
    last_line = [0.0]

    def sink(event) -> None:
        if isinstance(event, Progress):
            line = format_progress(event.step, event.total, event.info)
            if interactive:
                print(f"\r{line}\033[K", end="", file=sys.stderr, flush=True)
            elif event.step == event.total or time.monotonic() - last_line[0] >= 2.0:
                last_line[0] = time.monotonic()  # a log file gets a line every 2 s at most
                print(line, file=sys.stderr, flush=True)
        elif isinstance(event, (Result, Failed, Cancelled)):
            final.append(event)
            done.set()

    engine = Engine(sink)
    try:
        job = engine.submit(request)
        try:
            while not done.wait(0.2):
                pass
        except KeyboardInterrupt:  # Ctrl-C: cancel; the job saves a checkpoint first
            print("\nCancelling: saving a checkpoint...", file=sys.stderr, flush=True)
            engine.cancel(job)
            done.wait()
    finally:
        engine.shutdown(timeout=120)
    if interactive:
        print(file=sys.stderr)
    event = final[0]
    if isinstance(event, Cancelled):
        print(
            f"Cancelled. Checkpoint saved in {args.out}; continue with --resume.", file=sys.stderr
        )
        return EXIT_CANCELLED
    if isinstance(event, Failed):
        print(f"easel train: {event.message}", file=sys.stderr)
        return EXIT_CODES.get(event.kind, EXIT_FAILED)
    info = event.info
    print(
        f"Trained {info['family']} for {info['steps']} steps in {info['elapsed_s']:.1f} s "
        f"({info['images_per_s']:.1f} img/s); model saved in {info['out_dir']}"
    )
    if info.get("skipped"):
        print(
            f"Skipped {len(info['skipped'])} unreadable file(s): {', '.join(info['skipped'][:5])}"
        )
    return EXIT_OK
