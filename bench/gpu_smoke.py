"""Smoke test for a machine with a GPU (CUDA or Apple MPS): one generation per sampler.

    .venv/bin/python bench/gpu_smoke.py [--model PATH] [--size 512] [--steps 20] [--precision auto]

The build machine has no GPU, so the CUDA/MPS paths are unit-tested as policy only; run this
where a GPU exists. It generates through the real Engine with device `auto` (so the device and
dtype policy of engine.devices decides), times each sampler, and reports any job the engine
refused, e.g. NaN output from an fp16 VAE (which must come back as an OutputError with the fix,
never as a saved black image). Without --model it builds a full-size SD 1.5-architecture
pipeline with random weights (the images are noise, but every code path runs at real size).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="diffusers folder or single file")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16", "bf16"])
    parser.add_argument("--device", default="auto", choices=["auto", "cuda", "mps", "cpu"])
    args = parser.parse_args()

    from engine.api import SAMPLERS, GenerationRequest, RuntimeOptions
    from engine.devices import dtype_name, pick_dtype, select_device
    from engine.events import Failed, Result
    from engine.worker import Engine

    runtime = RuntimeOptions(device=args.device, precision=args.precision)
    device = select_device(runtime)
    print(f"device {device}, dtype {dtype_name(pick_dtype(device, runtime.precision))}")
    with tempfile.TemporaryDirectory(prefix="easel-gpu-smoke-") as tmp:
        model = args.model
        if model is None:
            from engine_overhead import build_sd15_random

            model = str(build_sd15_random(Path(tmp) / "sd15-random"))
        engine = Engine()
        rows, failures = [], 0
        try:
            for sampler in SAMPLERS:
                request = GenerationRequest(
                    prompt="a lighthouse on a cliff at sunset",
                    model=model,
                    sampler=sampler,
                    steps=args.steps,
                    width=args.size,
                    height=args.size,
                    seed=1,
                    runtime=runtime,
                )
                started = time.perf_counter()
                final = engine.run(request)
                seconds = time.perf_counter() - started
                row = {"sampler": sampler, "seconds": round(seconds, 2)}
                if isinstance(final, Result):
                    row.update(ok=True, **{k: final.info.get(k) for k in ("device", "dtype")})
                else:
                    failures += 1
                    message = final.message if isinstance(final, Failed) else type(final).__name__
                    row.update(ok=False, error=message)
                rows.append(row)
                print(json.dumps(row), flush=True)
        finally:
            engine.shutdown()
    print(f"{len(rows) - failures}/{len(rows)} samplers produced a usable image")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
