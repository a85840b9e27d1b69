"""Peak RSS of a full-size SD 1.5 generation from a single file: Easel's engine vs diffusers.

    nice -n 10 .venv/bin/python bench/peak_rss.py [--size 512] [--steps 1] [--threads 2]

A full-size SD 1.5 pipeline with random weights (published configs, bench/engine_overhead.py)
is written once as an original-layout single file in fp16 (2.1 GB, as checkpoints are shared).
Then, each in a fresh subprocess (RSS never goes down within a process), alternating:
- "engine": the Engine loads the file through the library code users hit (probe, bundled
  config, `from_single_file`, the engine's dtype: bf16 where the CPU has it) and makes one
  `--size` px text-to-image picture with `--steps` steps and CFG;
- "plain": diffusers' `from_single_file` with its default dtype (fp32; the bundled config and
  offline options of the library loader, plain diffusers would go online), the same request
  through a plain pipeline call.
- "engine_free_te": the same with the text encoder freed after encoding
  (`EASEL_FREE_TEXT_ENCODER=1`, what the memory plan does when RAM is short).
Peak RSS is `ru_maxrss` of the child. Target (issue 15): engine at most 3.7 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "tests"))


#: child kind -> the environment it runs with
KINDS = {
    "engine": {"EASEL_FREE_TEXT_ENCODER": "0"},
    "engine_free_te": {"EASEL_FREE_TEXT_ENCODER": "1"},
    "plain": {},
}


def write_single_file(path: Path) -> Path:
    import torch
    from diffusers import StableDiffusionPipeline
    from engine_overhead import build_sd15_random
    from library.ldm_layout import pipeline_to_ldm
    from safetensors.torch import save_file

    with tempfile.TemporaryDirectory(prefix="easel-rss-") as tmp:
        folder = build_sd15_random(Path(tmp) / "sd15")
        pipe = StableDiffusionPipeline.from_pretrained(str(folder), dtype=torch.float16)
        state = {k: v.contiguous() for k, v in pipeline_to_ldm(pipe).items()}
        save_file(state, str(path))
    return path


def request(model: Path, size: int, steps: int, threads: int):
    from engine_overhead import NEGATIVE, PROMPT

    from engine.api import GenerationRequest, RuntimeOptions

    return GenerationRequest(
        prompt=PROMPT,
        negative_prompt=NEGATIVE,
        model=str(model),
        steps=steps,
        width=size,
        height=size,
        seed=1234,
        sampler="Euler",
        guidance_scale=7.0,
        runtime=RuntimeOptions(device="cpu", cpu_threads=threads),
    )


def child(kind: str, model: Path, size: int, steps: int, threads: int) -> None:
    started = time.perf_counter()
    req = request(model, size, steps, threads)
    info: dict = {}
    if kind.startswith("engine"):
        from engine.events import Result
        from engine.worker import Engine

        engine = Engine()
        try:
            result = engine.run(req, timeout=3600)
            assert isinstance(result, Result), result
            info["dtype"] = result.info.get("dtype")
            # the engine's own phases: load, sampling + decode, whole job
            info.update({k: result.info.get(k) for k in ("load_s", "sample_s", "total_s")})
        finally:
            engine.shutdown()
    else:
        import torch
        from diffusers import EulerDiscreteScheduler

        from engine.library.single_file import load_single_file_pipeline

        torch.set_num_threads(threads)
        # diffusers' from_single_file with its default dtype (fp32); the bundled config and
        # offline options come from the library loader (plain diffusers would go online)
        pipe = load_single_file_pipeline(model)
        pipe.set_progress_bar_config(disable=True)
        pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
        pipe(
            prompt=req.prompt,
            negative_prompt=req.negative_prompt,
            num_inference_steps=steps,
            guidance_scale=req.guidance_scale,
            height=size,
            width=size,
            generator=torch.Generator("cpu").manual_seed(req.seed),
        )
        info["dtype"] = "fp32"
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    info.update(peak_rss_mib=round(peak_kib / 1024, 1), wall_s=round(time.perf_counter() - started))
    print(json.dumps(info))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--child", choices=list(KINDS), default=None)
    parser.add_argument("--model", type=Path, default=None, help="reuse (or write) this file")
    parser.add_argument("--write", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.write:
        write_single_file(args.write)
        return
    if args.child:
        child(args.child, args.model, args.size, args.steps, args.threads)
        return
    results: dict = {"size": args.size, "steps": args.steps, "threads": args.threads}
    with tempfile.TemporaryDirectory(prefix="easel-rss-file-") as tmp:
        model = args.model or Path(tmp) / "sd15-random.safetensors"
        if not model.is_file():
            # in its own process: Linux children inherit the parent's ru_maxrss across
            # fork+exec, so building the 5.8 GB pipeline here would become every child's "peak"
            subprocess.run([sys.executable, __file__, "--write", str(model)], check=True)
        results["file_gb"] = round(model.stat().st_size / 1e9, 2)
        runs: dict[str, list[dict]] = {kind: [] for kind in KINDS}
        for index in range(args.repeats):
            for kind in list(KINDS) if index % 2 == 0 else list(KINDS)[::-1]:
                out = subprocess.run(
                    [sys.executable, __file__, "--child", kind, "--model", str(model),
                     "--size", str(args.size), "--steps", str(args.steps),
                     "--threads", str(args.threads)],
                    capture_output=True, text=True, check=False, cwd=REPO,
                    env={**os.environ, "HF_HUB_OFFLINE": "1", **KINDS[kind]},
                )  # fmt: skip
                if out.returncode:
                    raise SystemExit(f"{kind} child failed:\n{out.stderr[-3000:]}")
                runs[kind].append(json.loads(out.stdout.strip().splitlines()[-1]))
                print(json.dumps({kind: runs[kind][-1]}), flush=True)
    for kind, items in runs.items():
        results[f"{kind}_peak_rss_mib"] = min(item["peak_rss_mib"] for item in items)
        results[f"{kind}_dtype"] = items[0]["dtype"]
        results[f"{kind}_wall_s"] = [item["wall_s"] for item in items]
    results["target_mib"] = round(3.7e9 / 2**20)
    results["load_avg"] = os.getloadavg()[0]
    print(json.dumps(results))


if __name__ == "__main__":
    main()
