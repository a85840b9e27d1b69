"""Batch throughput: the built-in model made locally and on Ray with 1 and 2 actors.

    python bench/batch_scaling.py [--images 24] [--steps 4] [--ray ADDRESS] [--actors 1,2]

Local runs through the in-process engine (a BatchRequest, as `easel batch` without --ray); Ray
runs use RayBatch on a cluster started here (127.0.0.1 only, no dashboard) or the one at
--ray ADDRESS. Every worker (the local engine, each actor) uses --threads torch threads
(default 1: on a small shared machine two threads on one image collapse when anything else
holds a core, see platform notes), so N actors use N x threads cores. Reported per run: wall
time including start-up and model loads, and the steady rate from the first finished image to
the last (what a long batch sees). Ray's per-image overhead is the extra time per image of one
Ray actor over the local run with the same threads. Prints a Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.api import RuntimeOptions  # noqa: E402
from engine.batch.request import BatchRequest  # noqa: E402


def write_grid(folder: Path, images: int, steps: int, first_seed: int) -> Path:
    path = folder / f"grid-{first_seed}.toml"
    path.write_text(
        f'steps = {steps}\nwidth = 64\nheight = 64\nsampler = "DDIM"\nguidance_scale = 3.0\n'
        '[grid]\nmodels = ["builtin:emoji-ldm"]\nprompts = ["a red apple"]\n'
        f'seeds = "{first_seed}-{first_seed + images - 1}"\n',
        encoding="utf-8",
    )
    return path


def run_local(folder: Path, images: int, steps: int, threads: int) -> dict:
    from engine.events import FINAL_EVENTS, Progress, Result
    from engine.worker import Engine

    finished_at: list[float] = []
    done = threading.Event()

    def sink(event) -> None:
        if isinstance(event, Progress) and event.step:
            finished_at.append(time.perf_counter())
        if isinstance(event, FINAL_EVENTS):
            done.set()

    engine = Engine(sink)
    try:
        runtime = RuntimeOptions(cpu_threads=threads)
        started = time.perf_counter()
        request = BatchRequest(
            spec=str(write_grid(folder, images, steps, 1)),
            out_dir=str(folder / "local"),
            runtime=runtime,
        )
        final = engine.run(request)
        assert isinstance(final, Result), getattr(final, "message", final)
        wall = time.perf_counter() - started
    finally:
        engine.shutdown()
    return _figures("local (in-process engine)", 1, threads, wall, finished_at)


def run_ray(folder: Path, images: int, steps: int, threads: int, actors: int, address) -> dict:
    from engine.batch.ray_runner import RayBatch, RayOptions

    finished_at: list[float] = []
    runtime = RuntimeOptions(cpu_threads=threads)
    request = BatchRequest(
        spec=str(write_grid(folder, images, steps, 1)),
        out_dir=str(folder / f"ray-{actors}"),
        runtime=runtime,
    )
    options = RayOptions(address=address, actors=actors, cpus_per_actor=threads)
    batch = RayBatch(
        request, options, on_result=lambda row: finished_at.append(time.perf_counter())
    )
    started = time.perf_counter()
    try:
        summary = batch.run()
    finally:
        batch.close()  # ends the actors; the cluster (started by this script) stays up
    wall = time.perf_counter() - started
    assert summary["done"] == images, summary
    return _figures(f"Ray, {actors} actor{'s' * (actors > 1)}", actors, runtime.cpu_threads,
                    wall, finished_at)  # fmt: skip


def _figures(name: str, workers: int, threads: int, wall: float, finished_at: list) -> dict:
    steady = (len(finished_at) - 1) / (finished_at[-1] - finished_at[0])
    return {"run": name, "workers": workers, "threads": threads, "wall": wall, "steady": steady,
            "images": len(finished_at)}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    parser.add_argument("--actors", default="1,2", help="actor counts to try, e.g. 1,2,8")
    parser.add_argument("--ray", default=None, help="cluster address (default: start one here)")
    args = parser.parse_args()
    import ray

    rows = []
    with tempfile.TemporaryDirectory(prefix="easel-batch-bench-") as tmp:
        folder = Path(tmp)
        rows.append(run_local(folder, args.images, args.steps, args.threads))
        print(rows[-1], file=sys.stderr)
        if args.ray:
            ray.init(address=args.ray, log_to_driver=False)
        else:
            ray.init(num_cpus=os.cpu_count(), _node_ip_address="127.0.0.1",
                     include_dashboard=False, log_to_driver=False)  # fmt: skip
        try:
            for actors in (int(a) for a in args.actors.split(",")):
                rows.append(run_ray(folder, args.images, args.steps, args.threads, actors, None))
                print(rows[-1], file=sys.stderr)
        finally:
            ray.shutdown()
    local = rows[0]["steady"]
    setup = f"{args.images} images, 64x64, DDIM, {args.steps} steps"
    print(f"{setup}, {args.threads} torch thread(s) per worker\n")
    print("| run | workers x threads | wall s (with start-up) | steady images/s | vs local |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['run']} | {row['workers']} x {row['threads']} | {row['wall']:.1f} | "
              f"{row['steady']:.2f} | {row['steady'] / local:.2f}x |")  # fmt: skip
    one_actor = next((r for r in rows if r["run"] == "Ray, 1 actor"), None)
    if one_actor:
        overhead_ms = (1 / one_actor["steady"] - 1 / local) * 1000
        print(f"\nRay's overhead per image (1 actor vs local, same threads): {overhead_ms:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
