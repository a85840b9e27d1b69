"""SD 1.5 VAE decode on this CPU: diffusers' default (fp32) against Easel's decode.

    nice -n 10 .venv/bin/python bench/vae_decode.py [--size 512] [--runs 2] [--threads 2]

Same random-weight full-size SD 1.5 VAE (published config), same latents, in one process:
diffusers' default fp32 decode, bf16 alone, and Easel's decode (`engine.sd.speed.prepare_vae`,
what `load_base_pipeline` applies: the engine's dtype plus channels_last; also tiled when
`--tiled`), taking turns round by round (the machine is shared). Best of `--runs`; PSNR
against the fp32 image.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))


def decode_once(vae, latents, dtype) -> tuple[float, object]:
    import torch

    started = time.perf_counter()
    with torch.inference_mode():
        image = vae.decode(latents.to(dtype)).sample.float()
    return time.perf_counter() - started, ((image + 1) / 2).clamp(0, 1)


def interleaved(decoders: dict, latents, runs: int) -> tuple[dict, dict]:
    """Each decoder once as a warm-up, then `runs` rounds taking turns (the order rotates), so
    a load spike on the shared machine hits every decoder alike; best time of each."""
    best = {name: math.inf for name in decoders}
    images = {}
    for name, (vae, dtype) in decoders.items():
        _, images[name] = decode_once(vae, latents, dtype)
    names = list(decoders)
    for index in range(runs):
        for name in names[index % len(names) :] + names[: index % len(names)]:
            vae, dtype = decoders[name]
            seconds, images[name] = decode_once(vae, latents, dtype)
            best[name] = min(best[name], seconds)
    return best, images


def psnr(image, reference) -> float:
    mse = float(((image - reference) ** 2).mean())
    return round(10 * math.log10(1.0 / mse), 1) if mse > 0 else float("inf")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tiled", action="store_true", help="also time Easel's tiled decode")
    args = parser.parse_args()

    import torch
    from diffusers import AutoencoderKL
    from engine_overhead import SD15_VAE

    from engine.devices import dtype_name, pick_dtype
    from engine.sd import speed

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    vae = AutoencoderKL(**SD15_VAE).eval()
    latents = torch.randn(
        1, 4, args.size // 8, args.size // 8, generator=torch.Generator().manual_seed(3)
    )
    engine_dtype = pick_dtype("cpu", "auto")
    results: dict = {
        "size": args.size,
        "threads": args.threads,
        "runs": args.runs,
        "engine_dtype": dtype_name(engine_dtype),
        "load_avg_before": os.getloadavg()[0],
    }
    bf16 = copy.deepcopy(vae).to(torch.bfloat16)
    easel = copy.deepcopy(vae).to(engine_dtype)
    speed.prepare_vae(easel, speed.plan_for("cpu", engine_dtype))  # what load_base_pipeline does
    decoders = {
        "diffusers_fp32": (vae, torch.float32),
        "bf16_only": (bf16, torch.bfloat16),
        "easel": (easel, engine_dtype),
    }
    if args.tiled:
        tiled = copy.deepcopy(easel)
        tiled.enable_tiling()
        decoders["easel_tiled"] = (tiled, engine_dtype)
    best, images = interleaved(decoders, latents, args.runs)
    results["load_avg_after"] = os.getloadavg()[0]
    for name, seconds in best.items():
        results[f"{name}_s"] = round(seconds, 2)
        if name != "diffusers_fp32":
            results[f"{name}_psnr"] = psnr(images[name], images["diffusers_fp32"])
            results[f"{name}_speedup"] = round(best["diffusers_fp32"] / seconds, 2)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
