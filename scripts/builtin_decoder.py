"""`build_builtin_models.py decoder`: tune (or replace and train) a latent diffusion model's
decoder on the training emoji with its encoder frozen (engine.training.decoder_tuning), so the
UNet, trained on that encoder's latents, draws through a sharper decoder unchanged."""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))  # its sibling builtin_sidecars

from builtin_sidecars import to_tensor  # noqa: E402

from engine.datasets import emoji  # noqa: E402


def cmd_decoder(args) -> None:
    from engine.families.registry import load_native_model
    from engine.training.checkpoint import save_model
    from engine.training.decoder_tuning import DecoderTuning, replace_decoder, tune_decoder

    torch.set_num_threads(args.threads)
    out = args.out or args.model
    if out.resolve() != args.model.resolve():
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(args.model, out)
    native = load_native_model(out)
    model, config = native.model.float(), native.config
    autoencoder = model.autoencoder
    rendered = emoji.load_rendered(args.cache, int(config["resolution"]))
    train, held_out = rendered.train(), rendered.test()
    if args.channels:
        replace_decoder(autoencoder, tuple(args.channels), args.blocks)
    tuning = DecoderTuning(
        steps=args.steps,
        lr=args.lr,
        edge_weight=args.edge_weight,
        crop=args.crop or None,
        seed=args.seed,
        ema_decay=args.ema_decay,
    )
    started = time.perf_counter()

    def progress(step: int, parts: dict) -> None:
        if step % 250 == 0:
            rate = step / (time.perf_counter() - started)
            print(f"decoder step {step}/{args.steps} {parts} ({rate:.1f}/s)", flush=True)

    # the held-out emoji only measure the reconstruction error; the tuning never sees them
    summary = tune_decoder(
        autoencoder, to_tensor(train.images), tuning, probe=to_tensor(held_out.images),
        progress=progress,
    )  # fmt: skip
    config = {
        **config,
        "autoencoder": autoencoder.config.to_dict(),
        "training": {**config.get("training", {}), "decoder_tuning": summary},
    }
    save_model(out, model.state_dict(), config)
    print(json.dumps(summary, indent=2))


def add_parser(sub) -> None:
    decoder = sub.add_parser("decoder", help="tune an ldm's decoder, encoder and UNet kept")
    decoder.add_argument("--model", type=Path, required=True)
    decoder.add_argument("--out", type=Path, help="write here (default: the model in place)")
    decoder.add_argument("--steps", type=int, default=6000)
    decoder.add_argument("--lr", type=float, default=1e-3)
    decoder.add_argument("--edge-weight", type=float, default=1.0)
    decoder.add_argument("--ema-decay", type=float, default=0.999)
    decoder.add_argument(
        "--channels", type=int, nargs=2, metavar=("H2", "H4"), help="a new decoder's widths"
    )
    decoder.add_argument("--blocks", type=int, default=2, help="a new decoder's blocks per level")
    decoder.add_argument("--crop", type=int, default=8, help="latent crop side (0: whole)")
    decoder.add_argument("--threads", type=int, default=1)
    decoder.add_argument("--seed", type=int, default=0)
    decoder.set_defaults(run=cmd_decoder)
