"""Speed of the built-in models through the engine's own generation path (model already loaded).

    .venv/bin/python bench/builtin_speed.py [--threads 2] [--runs 3]

Targets (issue 6), on 2 CPU cores: emoji-ldm one 64x64 image with 20 DDIM steps (classifier-free
guidance on) under 3 s, a batch of 4 under 6 s; emoji-dcgan 64 images under 1 s. Each case runs
once to warm up (load, MiniLM, first-call allocations), then `--runs` times; the median counts.
The machine may be shared: the load average is printed beside the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CASES = [
    # name, model, batch, target seconds
    ("emoji-ldm 1 image, 20 DDIM steps", "builtin:emoji-ldm", 1, 3.0),
    ("emoji-ldm batch of 4, 20 DDIM steps", "builtin:emoji-ldm", 4, 6.0),
    ("emoji-dcgan 64 images", "builtin:emoji-dcgan", 64, 1.0),
    ("emoji-beta-vae 64 images", "builtin:emoji-beta-vae", 64, None),
]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", default="", help="run only cases whose name contains this")
    args = parser.parse_args(argv)

    import torch

    from engine.api import GenerationRequest, RuntimeOptions
    from engine.context import JobContext
    from engine.generate import run_generation

    torch.set_num_threads(args.threads)
    ctx = JobContext(0, lambda event: None)
    results = []
    for name, model, batch, target in CASES:
        if args.only not in name:
            continue
        request = GenerationRequest(
            model=model,
            prompt="a red apple" if "ldm" in model else "",
            steps=20,
            sampler="DDIM",
            guidance_scale=3.0,
            batch_size=batch,
            runtime=RuntimeOptions(cpu_threads=args.threads),
        )
        run_generation(request, ctx)  # warm-up: load the model and the text encoder
        times = []
        for run in range(args.runs):
            started = time.perf_counter()
            run_generation(request.replace(seed=run + 1), ctx)
            times.append(time.perf_counter() - started)
        median = statistics.median(times)
        verdict = "" if target is None else (" PASS" if median < target else " FAIL")
        limit = "" if target is None else f" (target < {target:.0f} s)"
        print(f"{name}: median {median:.2f} s of {args.runs}{limit}{verdict}", flush=True)
        results.append({"case": name, "median_s": median, "runs_s": times, "target_s": target})
    load = os.getloadavg()
    print(f"threads {args.threads}, load average {load[0]:.1f} (machine may be shared)")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
