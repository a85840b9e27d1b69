"""Seconds per denoising step of a full-size SD 1.5 UNet on this machine's CPU.

    .venv/bin/python bench/sd_step_time.py [--size 512] [--steps 2] [--threads 2]

One step = one UNet forward with classifier-free guidance (batch 2: conditional and
unconditional), 512x512 (64x64 latents), random weights from the published SD 1.5 config. Timed
in fp32 and in the dtype the engine picks for the CPU (engine.devices.pick_dtype), plus bf16 for
reference when the engine picks fp32, which shows why it does on CPUs without native bf16.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))


def step_seconds(unet, dtype, size: int, steps: int) -> list[float]:
    import torch

    latents = torch.randn(2, 4, size // 8, size // 8, dtype=dtype)
    context = torch.randn(2, 77, 768, dtype=dtype)
    timestep = torch.tensor(500)
    times = []
    with torch.inference_mode():
        unet(latents, timestep, context)  # warm-up: allocations, kernel selection
        for _ in range(steps):
            started = time.perf_counter()
            unet(latents, timestep, context)
            times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-bf16", action="store_true", help="only fp32 and the engine pick")
    args = parser.parse_args()

    import torch
    from diffusers import UNet2DConditionModel
    from engine_overhead import SD15_UNET

    from engine.devices import cpu_has_native_bf16, dtype_name, pick_dtype

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**SD15_UNET).eval()
    params = sum(p.numel() for p in unet.parameters())
    engine_pick = pick_dtype("cpu", "auto")
    dtypes = [torch.float32]
    if engine_pick != torch.float32:
        dtypes.append(engine_pick)
    elif not args.skip_bf16:
        dtypes.append(torch.bfloat16)
    results = {
        "unet_params_m": round(params / 1e6, 1),
        "size": args.size,
        "threads": args.threads,
        "cpu_native_bf16": cpu_has_native_bf16(),
        "engine_cpu_dtype": dtype_name(engine_pick),
    }
    for dtype in dtypes:
        unet.to(dtype)
        times = step_seconds(unet, dtype, args.size, args.steps)
        results[f"{dtype_name(dtype)}_s_per_step"] = round(min(times), 2)
        results[f"{dtype_name(dtype)}_runs_s"] = [round(t, 2) for t in times]
        print(json.dumps(results), flush=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
