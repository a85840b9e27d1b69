"""How close Easel's SD 1.5 UNet step comes to what this CPU can do at best.

    nice -n 10 .venv/bin/python bench/cpu_floor.py [--size 512|256] [--steps 2] [--threads 2]
    nice -n 10 .venv/bin/python bench/cpu_floor.py --size 256 --levers   # each lever alone

1. The machine: CPU flags (native bf16: avx512_bf16 / amx_bf16), matmul throughput in fp32 and
   bf16 with large matmuls (4096^3) and with the UNet's own shapes (attention projections,
   feed-forward, 3x3 convolutions, SDPA) at the chosen size.
2. The work: FLOPs of one UNet step with classifier-free guidance (batch 2), counted with
   `torch.utils.flop_counter.FlopCounterMode` on the full-size SD 1.5 architecture (random
   weights from the published config). floor = FLOPs / best measured throughput. The counter
   misses attention, so the shapes of every SDPA call give its QK^T/PV FLOPs and its softmax
   exponentials; with the in-cache exp rate they give an attainable floor (no exact attention
   is faster), reported beside the issue's floor.
3. The same denoising run (same noise, Euler steps) three ways in one process: diffusers' plain
   UNet in fp32, in bf16, and Easel's (the dtype `engine.devices.pick_dtype` picks plus the
   levers of `engine.sd.speed`), interleaved step by step (the machine is shared: a load spike
   then hits all three). Seconds per step (best of the timed steps), ratio to the floor, and
   the PSNR of each final image (decoded by one fp32 VAE) against the fp32 image.

Prints one JSON line per stage; the last line holds everything.
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


def cpu_flags() -> dict:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    flags = set(text.split())
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in text.splitlines()
            if line.startswith("model name")
        ),
        "unknown",
    )
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_fp16")
    return {"cpu": model, "flags": {name: name in flags for name in wanted}}


def best_seconds(fn, repeats: int) -> float:
    fn()  # warm-up: oneDNN picks and caches its kernels on the first call
    best = math.inf
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def throughput(size: int, repeats: int) -> dict:
    """GFLOP/s of big matmuls and of the UNet's own shapes at `size` px, fp32 and bf16."""
    import torch
    import torch.nn.functional as F

    tokens = (size // 8) ** 2  # the first level's attention sequence length
    batch = 2  # classifier-free guidance
    shapes = {
        "matmul_4096": ("mm", 4096, 4096, 4096),
        "attn_proj_320": ("mm", batch * tokens, 320, 320),
        "ff_320x2560": ("mm", batch * tokens, 320, 2560),
        "ff_1280x10240": ("mm", batch * tokens // 16, 1280, 10240),
        "conv3x3_320": ("conv", batch, 320, size // 8),
        "conv3x3_640": ("conv", batch, 640, size // 16),
        "conv3x3_1280": ("conv", batch, 1280, size // 32),
        "sdpa_8x40": ("sdpa", batch * 8, tokens, 40),
    }
    results: dict = {}
    for dtype in (torch.float32, torch.bfloat16):
        name = str(dtype).replace("torch.", "")
        for label, (kind, a, b, c) in shapes.items():
            if kind == "mm":
                x, w = torch.randn(a, b, dtype=dtype), torch.randn(b, c, dtype=dtype)
                flops = 2 * a * b * c

                def run(x=x, w=w):
                    return x @ w
            elif kind == "conv":
                x = torch.randn(a, b, c, c, dtype=dtype).to(memory_format=torch.channels_last)
                w = torch.randn(b, b, 3, 3, dtype=dtype).to(memory_format=torch.channels_last)
                flops = 2 * a * b * b * 9 * c * c

                def run(x=x, w=w):
                    return F.conv2d(x, w, padding=1)
            else:
                q = torch.randn(1, a, b, c, dtype=dtype)
                flops = 4 * a * b * b * c  # QK^T and PV

                def run(q=q):
                    return F.scaled_dot_product_attention(q, q, q)

            with torch.inference_mode():
                seconds = best_seconds(run, repeats)
            results[f"{name}_{label}_gflops"] = round(flops / seconds / 1e9, 1)
    results["best_gflops"] = max(v for k, v in results.items() if k.endswith("_gflops"))
    return results


def count_step_flops(unet, size: int) -> tuple[int, dict]:
    """FLOPs of one step as FlopCounterMode counts them (conv + linear), and the attention it
    does not count: QK^T + PV FLOPs and the number of softmax exponentials, read from the
    shapes of every `scaled_dot_product_attention` call."""
    import torch
    import torch.nn.functional as F
    from torch.utils.flop_counter import FlopCounterMode

    attention = {"attention_flops": 0, "softmax_exps": 0, "calls": 0}
    real_sdpa = F.scaled_dot_product_attention

    def counting_sdpa(query, key, value, *args, **kwargs):
        scores = query.shape[:-1].numel() * key.shape[-2]  # batch x heads x queries x keys
        attention["softmax_exps"] += scores
        attention["attention_flops"] += 2 * scores * (query.shape[-1] + value.shape[-1])
        attention["calls"] += 1
        return real_sdpa(query, key, value, *args, **kwargs)

    latents, context, timestep = step_inputs(size, torch.float32)
    counter = FlopCounterMode(display=False)
    F.scaled_dot_product_attention = counting_sdpa
    try:
        with torch.inference_mode(), counter:
            unet(latents, timestep, context)
    finally:
        F.scaled_dot_product_attention = real_sdpa
    return counter.get_total_flops(), attention


def exp_throughput() -> dict:
    """Exponentials per second with the data in cache (a 64x4096 block, the size of a flash
    attention tile): softmax needs one per attention score, and no matmul unit computes them.
    fp32 is what torch's CPU flash kernel computes them in, bf16 inputs or not."""
    import torch

    rates = {}
    for dtype in (torch.float32, torch.bfloat16):
        x = torch.randn(64, 4096, dtype=dtype)
        out = torch.empty_like(x)

        def twenty_exps(x=x, out=out):
            for _ in range(20):
                torch.exp(x, out=out)

        seconds = best_seconds(twenty_exps, 5)
        name = str(dtype).replace("torch.", "")
        rates[f"{name}_gexp_per_s"] = round(20 * x.numel() / seconds / 1e9, 2)
    return rates


def step_inputs(size: int, dtype):
    import torch

    generator = torch.Generator().manual_seed(7)
    latents = torch.randn(2, 4, size // 8, size // 8, generator=generator)
    context = torch.randn(2, 77, 768, generator=generator)
    return latents.to(dtype), context.to(dtype), torch.tensor(500)


class Denoiser:
    """One denoising run (same noise, Euler steps, CFG) that advances one step per call, so
    several configurations can take turns step by step: on a shared machine, interleaving is
    what makes their ratios fair (a load spike hits all of them alike)."""

    def __init__(self, unet, dtype, size: int, steps: int, channels_last: bool = False):
        import torch
        from diffusers import EulerDiscreteScheduler

        from tests.helpers.tiny_sd import SD_SCHEDULER

        options = {k: v for k, v in SD_SCHEDULER.items()}
        for unused in ("skip_prk_steps", "set_alpha_to_one"):
            options.pop(unused, None)
        self.scheduler = EulerDiscreteScheduler(**options)
        self.scheduler.set_timesteps(steps)
        generator = torch.Generator().manual_seed(1234)
        noise = torch.randn(1, 4, size // 8, size // 8, generator=generator)
        self.latents = noise * self.scheduler.init_noise_sigma
        self.context = torch.randn(2, 77, 768, generator=generator).to(dtype)
        self.unet, self.dtype, self.channels_last = unet, dtype, channels_last
        self.times: list[float] = []
        self.index = 0

    def _model_input(self, t):
        import torch

        model_in = self.scheduler.scale_model_input(torch.cat([self.latents] * 2), t)
        model_in = model_in.to(self.dtype)
        if self.channels_last:
            model_in = model_in.to(memory_format=torch.channels_last)
        return model_in

    def warm_up(self) -> float:
        import torch

        started = time.perf_counter()
        with torch.inference_mode():
            t = self.scheduler.timesteps[0]
            self.unet(self._model_input(t), t, self.context)
        return time.perf_counter() - started

    def step(self) -> None:
        import torch

        t = self.scheduler.timesteps[self.index]
        started = time.perf_counter()
        with torch.inference_mode():
            noise = self.unet(self._model_input(t), t, self.context).sample.float()
            uncond, cond = noise.chunk(2)
            guided = uncond + 7.0 * (cond - uncond)
            self.latents = self.scheduler.step(guided, t, self.latents).prev_sample
        self.times.append(time.perf_counter() - started)
        self.index += 1


def interleaved(runs: dict, steps: int) -> None:
    """Advance the (warmed-up) runs in turn, one step each, rotating who goes first."""
    names = list(runs)
    for step in range(steps):
        order = names[step % len(names) :] + names[: step % len(names)]
        for name in order:
            runs[name].step()


def decode_fp32(vae, latents):
    import torch

    with torch.inference_mode():
        image = vae.decode(latents.float() / vae.config.scaling_factor).sample
    return ((image + 1) / 2).clamp(0, 1)


def psnr(image, reference) -> float:
    mse = float(((image - reference) ** 2).mean())
    return round(10 * math.log10(1.0 / mse), 1) if mse > 0 else float("inf")


def attention_floor(attention: dict, counted_flops: int, results: dict) -> dict:
    """The floor again with what FlopCounterMode misses: attention's FLOPs at the best matmul
    throughput, and its softmax exponentials at the in-cache exp rate (fp32, as the kernel
    computes them). No exact attention can run faster than this on this CPU."""
    rates = exp_throughput()
    best = results["best_gflops"] * 1e9
    with_attention = (counted_flops + attention["attention_flops"]) / best
    exp_s = attention["softmax_exps"] / (rates["float32_gexp_per_s"] * 1e9)
    return {
        **rates,
        "attention_calls": attention["calls"],
        "attention_gflop": round(attention["attention_flops"] / 1e9, 1),
        "softmax_gexps": round(attention["softmax_exps"] / 1e9, 3),
        "floor_with_attention_s": round(with_attention, 3),
        "softmax_exp_s": round(exp_s, 3),
        "attainable_floor_s_per_step": round(with_attention + exp_s, 3),
    }


def run_configs(args, results: dict) -> None:
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from engine_overhead import SD15_UNET, SD15_VAE

    from engine.devices import dtype_name, pick_dtype
    from engine.sd import speed

    torch.manual_seed(0)
    unet = UNet2DConditionModel(**SD15_UNET).eval()
    vae = AutoencoderKL(**SD15_VAE).eval()
    flops, attention = count_step_flops(unet, args.size)
    floor_s = flops / (results["best_gflops"] * 1e9)
    results.update(step_gflop=round(flops / 1e9, 1), floor_s_per_step=round(floor_s, 3))
    results.update(attention_floor(attention, flops, results))
    results["sdpa_in_use"] = speed.sdpa_in_use(unet)
    print(json.dumps(results), flush=True)

    engine_dtype = pick_dtype("cpu", "auto")
    results["engine_dtype"] = dtype_name(engine_dtype)
    results["load_avg_before"] = os.getloadavg()[0]
    plan = speed.plan_for("cpu", engine_dtype)
    easel_unet = copy.deepcopy(unet).to(engine_dtype)
    holder = type("Pipe", (), {"unet": easel_unet, "vae": None})()
    plan = speed.apply_speed_plan(holder, plan)
    results["easel_levers"] = plan.describe()
    runs = {
        "diffusers_fp32": Denoiser(unet, torch.float32, args.size, args.steps),
        "diffusers_bf16": Denoiser(
            copy.deepcopy(unet).to(torch.bfloat16), torch.bfloat16, args.size, args.steps
        ),
        "easel": Denoiser(easel_unet, engine_dtype, args.size, args.steps, plan.channels_last),
    }
    for run in runs.values():
        run.warm_up()
    interleaved(runs, args.steps)
    results["load_avg_after"] = os.getloadavg()[0]
    reference = decode_fp32(vae, runs["diffusers_fp32"].latents)
    for label, run in runs.items():
        best = min(run.times)
        image = decode_fp32(vae, run.latents)
        results[f"{label}_s_per_step"] = round(best, 3)
        results[f"{label}_runs_s"] = [round(t, 2) for t in run.times]
        results[f"{label}_x_floor"] = round(best / floor_s, 2)
        results[f"{label}_x_attainable"] = round(best / results["attainable_floor_s_per_step"], 2)
        results[f"{label}_psnr_vs_fp32"] = psnr(image, reference)
    results["easel_vs_diffusers_fp32"] = round(
        results["diffusers_fp32_s_per_step"] / results["easel_s_per_step"], 2
    )
    print(json.dumps(results), flush=True)


def run_levers(args, results: dict) -> None:
    """Each lever alone on top of the engine's dtype, then all together (ratios in one run)."""
    import torch
    from diffusers import UNet2DConditionModel
    from engine_overhead import SD15_UNET

    from engine.devices import pick_dtype
    from engine.sd import speed

    dtype = pick_dtype("cpu", "auto")
    variants = {
        "plain": speed.SpeedPlan(channels_last=False),
        "channels_last": speed.SpeedPlan(channels_last=True),
        "fused_qkv": speed.SpeedPlan(channels_last=False, fuse_qkv=True),
        "channels_last+fused_qkv": speed.SpeedPlan(channels_last=True, fuse_qkv=True),
    }
    if args.compile:
        variants["channels_last+compile"] = speed.SpeedPlan(channels_last=True, compile_unet=True)
    runs, first_call = {}, {}
    torch.manual_seed(0)
    base = UNet2DConditionModel(**SD15_UNET).eval().to(dtype)
    for label, plan in variants.items():
        unet = copy.deepcopy(base)
        holder = type("Pipe", (), {"unet": unet, "vae": None})()
        speed.apply_speed_plan(holder, plan)
        runs[label] = Denoiser(unet, dtype, args.size, args.steps, plan.channels_last)
    del base
    for label, run in runs.items():
        first_call[label] = run.warm_up()  # compile time shows here
    interleaved(runs, args.steps)
    results["load_avg"] = os.getloadavg()[0]
    for label, run in runs.items():
        results[f"lever_{label}_s_per_step"] = round(min(run.times), 3)
        results[f"lever_{label}_runs_s"] = [round(t, 2) for t in run.times]
        results[f"lever_{label}_first_call_s"] = round(first_call[label], 2)
    print(json.dumps(results), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="matmul timings (best is kept)")
    parser.add_argument("--levers", action="store_true", help="time each speed lever alone")
    parser.add_argument("--compile", action="store_true", help="with --levers: torch.compile too")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    results = {"size": args.size, "steps": args.steps, "threads": args.threads, **cpu_flags()}
    results["torch"] = torch.__version__
    results.update(throughput(args.size, args.repeats))
    print(json.dumps(results), flush=True)
    if args.levers:
        run_levers(args, results)
    else:
        run_configs(args, results)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
