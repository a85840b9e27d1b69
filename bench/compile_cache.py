"""What torch.compile buys Easel's SD 1.5 UNet step on the CPU, and what it costs to start.

    nice -n 10 .venv/bin/python bench/compile_cache.py [--size 512] [--steps 3] [--threads 2]
        [--variants default,freezing,max-autotune]

Every run is its own process (a compile cache is only "warm" for a process that did not compile
it), one after another on the same machine:

1. fp32 eager: the reference picture (diffusers' default dtype).
2. eager: the engine's pick (bf16 + channels_last through `engine.sd.speed`).
3. for each compile variant, a **cold** start (empty inductor cache folder) and then a **warm**
   start (a new process on the cache the cold one filled), through the engine's own
   `compile_with_fallback`:
   - default: `torch.compile` as the engine calls it;
   - freezing: inductor's `freezing` (weights become constants, so oneDNN prepacks them once);
   - max-autotune: `mode="max-autotune"` with freezing (inductor times its GEMM templates).

Each process reports the first call (the compile, or the cache load), the best step of the timed
steps and the final latents; the parent decodes every run's latents with one fp32 VAE and gives
the PSNR against the fp32 picture, so a compiled step that drew a different picture shows.
Prints one JSON line per run; the last line holds everything.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

VARIANTS = ("default", "freezing", "max-autotune")


def compiler_for(variant: str):
    import torch
    import torch._inductor.config as inductor_config

    if variant in ("freezing", "max-autotune"):
        inductor_config.freezing = True  # why: constant weights let inductor prepack them once
    mode = "max-autotune" if variant == "max-autotune" else None
    return lambda fn: torch.compile(fn, mode=mode)


def child(args) -> None:
    """One run in this process: build the UNet, apply the plan, time first call and steps."""
    import torch
    from cpu_floor import Denoiser
    from diffusers import UNet2DConditionModel
    from engine_overhead import SD15_UNET

    from engine.devices import pick_dtype
    from engine.sd import speed

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**SD15_UNET).eval()
    dtype = torch.float32 if args.child == "fp32" else pick_dtype("cpu", "auto")
    unet = unet.to(dtype)
    channels_last = args.child != "fp32"
    holder = type("Pipe", (), {"unet": unet, "vae": None})()
    speed.apply_speed_plan(holder, speed.SpeedPlan(channels_last=channels_last))
    if args.child not in ("fp32", "eager"):
        speed.compile_with_fallback(unet, cache_dir=args.cache, compiler=compiler_for(args.child))
    run = Denoiser(unet, dtype, args.size, args.steps, channels_last)
    first_call = run.warm_up()
    for _ in range(args.steps):
        run.step()
    torch.save(run.latents, args.out)
    error = getattr(unet, "_easel_compile_error", None)
    print(
        json.dumps(
            {
                "first_call_s": round(first_call, 1),
                "s_per_step": round(min(run.times), 3),
                "steps_s": [round(t, 2) for t in run.times],
                "compile_error": error,
                "load_avg": os.getloadavg()[0],
            }
        ),
        flush=True,
    )


def run_child(label: str, mode: str, args, cache: str, out: Path) -> dict:
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=cache, TORCHINDUCTOR_FX_GRAPH_CACHE="1")
    command = [sys.executable, __file__, "--child", mode, "--cache", cache, "--out", str(out)]
    command += ["--size", str(args.size), "--steps", str(args.steps)]
    command += ["--threads", str(args.threads)]
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        result = {"failed": done.stderr.strip().splitlines()[-3:], "wall_s": round(wall, 1)}
    else:
        result = {**json.loads(lines[-1]), "process_wall_s": round(wall, 1)}
    print(json.dumps({label: result}), flush=True)
    return result


def picture_psnr(latent_files: dict) -> dict:
    import torch
    from cpu_floor import decode_fp32, psnr
    from diffusers import AutoencoderKL
    from engine_overhead import SD15_VAE

    torch.manual_seed(0)
    vae = AutoencoderKL(**SD15_VAE).eval()
    reference = decode_fp32(vae, torch.load(latent_files["fp32"]))
    return {
        label: psnr(decode_fp32(vae, torch.load(path)), reference)
        for label, path in latent_files.items()
        if label != "fp32" and path.is_file()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    import torch

    results = {"size": args.size, "steps": args.steps, "threads": args.threads}
    results["torch"] = torch.__version__
    results["load_avg_before"] = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="easel-compile-bench-") as work:
        work = Path(work)
        latents = {}
        for label in ("fp32", "eager"):
            latents[label] = work / f"{label}.pt"
            results[label] = run_child(label, label, args, str(work / "unused"), latents[label])
        for variant in args.variants.split(","):
            cache = str(work / f"cache-{variant}")
            for start in ("cold", "warm"):
                label = f"{variant}_{start}"
                latents[label] = work / f"{label}.pt"
                results[label] = run_child(label, variant, args, cache, latents[label])
        results["psnr_vs_fp32"] = picture_psnr(latents)
    results["load_avg_after"] = os.getloadavg()[0]
    print(json.dumps(results))


if __name__ == "__main__":
    main()
