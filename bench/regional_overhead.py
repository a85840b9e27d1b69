"""Regional prompts' cost: 0, 1 and 2 regions on the full-size SD 1.5 architecture, one pass.

    python bench/regional_overhead.py [--size 256] [--steps 3] [--repeats 2] [--threads 1]

Random weights from the bundled SD 1.5 configs, saved to a temporary folder and loaded through
the engine as users' models are. Each region adds one cross-attention per `attn2` layer for the
positive half of the batch (the queries are the layer's own), so a region should cost a small
fraction of a step, far below the whole extra pass per region that prompt-per-pass methods
take. Reported: the best of --repeats per case (the machine is shared), the time per step, and
what each region adds per step relative to no region.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the bench scripts beside this one

import numpy as np  # noqa: E402
import torch  # noqa: E402
from control_overhead import build_sd15  # noqa: E402
from PIL import Image  # noqa: E402


def masks(size: int, root: Path) -> list[Path]:
    paths = []
    for index, columns in enumerate((slice(0, size // 2), slice(size // 2, size))):
        mask = np.zeros((size, size), np.uint8)
        mask[:, columns] = 255
        paths.append(root / f"mask-{index}.png")
        Image.fromarray(mask).save(paths[-1])
    return paths


def easel_seconds(engine, model: Path, mask_paths: list[Path], args, count: int) -> float:
    from engine.api import GenerationRequest, RuntimeOptions
    from engine.api_control import Region

    prompts = ("a red barn", "a blue lake")
    regions = [Region(mask=str(mask_paths[i]), prompt=prompts[i]) for i in range(count)]
    request = GenerationRequest(
        prompt="a landscape at dusk",
        negative_prompt="blurry",
        model=str(model),
        steps=args.steps,
        width=args.size,
        height=args.size,
        seed=1,
        sampler="Euler",
        regions=regions,
        runtime=RuntimeOptions(device="cpu", precision="fp32", cpu_threads=args.threads),
    )
    result = engine.run(request, timeout=3600)
    return float(result.info["sample_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from engine.worker import Engine

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        model = build_sd15(root)
        mask_paths = masks(args.size, root)
        engine = Engine()
        try:
            easel_seconds(engine, model, mask_paths, args, 0)  # load and warm up
            best = {count: float("inf") for count in (0, 1, 2)}
            for _ in range(args.repeats):  # interleaved: a busy spell hits every case alike
                for count in best:
                    seconds = easel_seconds(engine, model, mask_paths, args, count)
                    best[count] = min(best[count], seconds)
                    print(f"{count} regions: {seconds:.2f} s", flush=True)
        finally:
            engine.shutdown(timeout=60)
    per_step = {count: seconds / args.steps for count, seconds in best.items()}
    print("\n| regions | best (s) | per step (s) | added per step vs none |")
    print("|---|---|---|---|")
    for count, seconds in best.items():
        added = (per_step[count] - per_step[0]) / per_step[0] * 100
        print(f"| {count} | {seconds:.2f} | {per_step[count]:.3f} | {added:+.1f} % |")


if __name__ == "__main__":
    main()
