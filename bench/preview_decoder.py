"""The fast preview decoder on a full-size SD 1.5 VAE: distillation cost, PSNR, decode speed.

    nice -n 10 .venv/bin/python bench/preview_decoder.py [--steps 300] [--size 512] [--threads 2]

1. Distil Easel's TAESD-layout decoder from a full-size SD 1.5 VAE (published config, random
   weights: no download) the way the worker does (`engine.sd.distil_decoder`), `--steps`
   training steps; report its PSNR against the full decode on held-out images and the PSNR of
   the best linear latent->RGB map upsampled (the old preview's approach).
2. Decode the same `--size` px latents with the full VAE (fp32: diffusers' default; and the
   engine's dtype + channels_last) and with the tiny decoder in the engine's dtype, taking turns
   (the machine is shared); best of `--runs`.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch
    from diffusers import AutoencoderKL
    from engine_overhead import SD15_VAE

    from engine.devices import dtype_name, pick_dtype
    from engine.sd import speed
    from engine.sd.distil_decoder import distil_decoder
    from engine.sd.tiny_decoder import PreviewDecoder

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dtype = pick_dtype("cpu", "auto")
    results: dict = {"steps": args.steps, "size": args.size, "engine_dtype": dtype_name(dtype)}
    results["load_avg_before"] = os.getloadavg()[0]
    vae = AutoencoderKL(**SD15_VAE).eval()
    easel = copy.deepcopy(vae).to(dtype)
    speed.prepare_vae(easel, speed.plan_for("cpu", dtype))
    decoder, report = distil_decoder(easel, steps=args.steps)
    results.update({f"distil_{k}": v for k, v in report.items()})
    print(json.dumps(results), flush=True)

    tiny = PreviewDecoder(decoder.to(dtype).to(memory_format=torch.channels_last), "distilled")
    latents = torch.randn(1, 4, args.size // 8, args.size // 8) * 0.18215 * 4
    scale = vae.config.scaling_factor

    def full(model, model_dtype):
        def run():
            with torch.inference_mode():
                model.decode((latents / scale).to(model_dtype))

        return run

    decoders = {
        "vae_fp32": full(vae, torch.float32),
        "vae_easel": full(easel, dtype),
        "tiny": lambda: tiny.decode(latents),
    }
    best = {name: math.inf for name in decoders}
    for run in decoders.values():
        run()  # warm-up
    names = list(decoders)
    for index in range(args.runs):
        for name in names[index % 3 :] + names[: index % 3]:
            started = time.perf_counter()
            decoders[name]()
            best[name] = min(best[name], time.perf_counter() - started)
    results.update({f"{name}_decode_s": round(s, 3) for name, s in best.items()})
    results["tiny_vs_vae_fp32"] = round(best["vae_fp32"] / best["tiny"], 1)
    results["tiny_vs_vae_easel"] = round(best["vae_easel"] / best["tiny"], 1)
    results["load_avg_after"] = os.getloadavg()[0]
    print(json.dumps(results))


if __name__ == "__main__":
    main()
