"""Where one Easel SD 1.5 UNet step goes, by kind of operation, against each kind's FLOP share.

    nice -n 10 .venv/bin/python bench/unet_profile.py [--size 512] [--threads 1]

The full-size SD 1.5 UNet (random weights, published config) in the engine's dtype with the
engine's speed levers (engine.sd.speed), one warm-up step, then one step with classifier-free
guidance (batch 2) under torch.profiler (CPU self time per aten op) and one under
FlopCounterMode (FLOPs per aten op). Ops are grouped into kinds (conv, linear/matmul, SDPA,
group_norm, layer_norm, activations, elementwise, copies/reorders, other); each kind gets its
share of the time, its share of the FLOPs and its GFLOP/s. The last JSON line holds it all.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

#: substrings of aten op names -> kind (first match wins, so the order matters)
KINDS = (
    ("sdpa", ("scaled_dot_product", "flash_attention", "_efficient_attention")),
    ("conv", ("convolution", "conv2d", "mkldnn_conv")),
    ("linear/matmul", ("addmm", "linear", "::mm", "bmm", "matmul", "baddbmm", "mkldnn_linear")),
    ("group_norm", ("group_norm",)),
    ("layer_norm", ("layer_norm",)),
    ("gelu/silu", ("gelu", "silu", "sigmoid")),
    ("copies/reorders", ("copy_", "contiguous", "clone", "to_dense", "_to_copy", "reorder", "cat")),
    ("elementwise", ("add", "mul", "div", "sub", "chunk", "split", "cos", "sin", "exp")),
)


def kind_of(op_name: str) -> str:
    name = op_name.lower()
    for kind, needles in KINDS:
        if any(needle in name for needle in needles):
            return kind
    return "other"


def step_inputs(size: int, dtype, channels_last: bool):
    import torch

    generator = torch.Generator().manual_seed(7)
    latents = torch.randn(2, 4, size // 8, size // 8, generator=generator).to(dtype)
    if channels_last:
        latents = latents.to(memory_format=torch.channels_last)
    context = torch.randn(2, 77, 768, generator=generator).to(dtype)
    return latents, torch.tensor(500), context


def profile_time(unet, inputs) -> tuple[dict, float, list]:
    """{kind: self CPU seconds} of one step; the step's wall seconds; the top ops."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU]) as prof:
        started = time.perf_counter()
        unet(*inputs)
        wall = time.perf_counter() - started
    by_kind: dict = defaultdict(float)
    ops = []
    for event in prof.key_averages():
        if not event.key.startswith("aten::") and "mkldnn" not in event.key:
            continue
        seconds = event.self_cpu_time_total / 1e6
        by_kind[kind_of(event.key)] += seconds
        ops.append((event.key, round(seconds, 3), event.count))
    ops.sort(key=lambda item: -item[1])
    return dict(by_kind), wall, ops[:25]


def count_flops(unet, inputs) -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        unet(*inputs)
    by_kind: dict = defaultdict(int)
    for op, flops in counter.get_flop_counts()["Global"].items():
        by_kind[kind_of(str(op).replace("aten.", "aten::"))] += flops
    return dict(by_kind)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch
    from diffusers import UNet2DConditionModel
    from engine_overhead import SD15_UNET

    from engine.devices import dtype_name, pick_dtype
    from engine.sd import speed

    torch.set_num_threads(args.threads)
    dtype = pick_dtype("cpu", "auto")
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**SD15_UNET).eval()
    flops = count_flops(copy.deepcopy(unet), step_inputs(args.size, torch.float32, False))
    unet = unet.to(dtype)
    holder = type("Pipe", (), {"unet": unet, "vae": None})()
    plan = speed.apply_speed_plan(holder, speed.plan_for("cpu", dtype))
    inputs = step_inputs(args.size, dtype, plan.channels_last)
    results: dict = {"size": args.size, "threads": args.threads, "dtype": dtype_name(dtype)}
    results.update(levers=plan.describe(), load_avg_before=os.getloadavg()[0])
    from cpu_floor import throughput

    machine = throughput(args.size, repeats=3)  # the floor in this run, at these threads
    results.update(best_gflops=machine["best_gflops"], throughput=machine)
    with torch.inference_mode():
        unet(*inputs)  # warm-up: oneDNN picks its kernels
    seconds, wall, top_ops = profile_time(unet, inputs)
    results.update(step_wall_s=round(wall, 3), load_avg_after=os.getloadavg()[0])
    total_s, total_flops = sum(seconds.values()), sum(flops.values())
    table = {}
    for kind in sorted(set(seconds) | set(flops), key=lambda k: -seconds.get(k, 0.0)):
        kind_s, kind_flops = seconds.get(kind, 0.0), flops.get(kind, 0)
        table[kind] = {
            "s": round(kind_s, 3),
            "time_pct": round(100 * kind_s / total_s, 1),
            "flop_pct": round(100 * kind_flops / total_flops, 1) if total_flops else 0.0,
            "gflops": round(kind_flops / kind_s / 1e9, 1) if kind_s and kind_flops else None,
        }
    results.update(total_self_s=round(total_s, 3), step_gflop=round(total_flops / 1e9, 1))
    floor_s = total_flops / (machine["best_gflops"] * 1e9)
    results.update(floor_s=round(floor_s, 3), x_floor=round(wall / floor_s, 2))
    results.update(by_kind=table, top_ops=top_ops)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
