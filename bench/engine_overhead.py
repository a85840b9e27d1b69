"""What the engine costs on top of diffusers: wall time, peak RSS, and whether images are equal.

    .venv/bin/python bench/engine_overhead.py [--only tiny|sd15|flux|sd3] [--runs 3] [--threads 2]

For a tiny pipeline, a full-size SD 1.5-architecture pipeline (random weights built from the
published configs below: no download), a FLUX.1-architecture transformer at full width and
reduced depth (1 double + 1 single block of 3072, 24 heads of 128, T5-width 4096 context) and
an SD3 Medium-width one (2 joint blocks of 1536), the same txt2img request runs through the
Engine (worker thread, events, previews, our prompt encoding, metadata) and through a plain
diffusers call on the same loaded modules, alternating which goes first, several times. Peak
RSS is measured in fresh subprocesses (one loads through the engine, one through plain
`from_pretrained`), since RSS never goes down within a process. Targets (issues 2 and 13): at
most +3% wall time, +5% peak RSS, same pixels.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# Stable Diffusion 1.5's published component configs (runwayml/stable-diffusion-v1-5).
SD15_UNET = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 2,
    "block_out_channels": [320, 640, 1280, 1280],
    "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
    "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
    "norm_num_groups": 32,
    "norm_eps": 1e-5,
    "act_fn": "silu",
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "mid_block_scale_factor": 1,
}
SD15_VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "act_fn": "silu",
    "sample_size": 512,
}
SD15_TEXT = {  # CLIP ViT-L/14 text tower
    "vocab_size": 49408,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "projection_dim": 768,
    "bos_token_id": 49406,
    "eos_token_id": 49407,
    "pad_token_id": 49407,
}

PROMPT = "a red apple on a wooden table, studio light"
NEGATIVE = "blurry, lowres"


def build_sd15_random(folder: Path) -> Path:
    """A full-size SD 1.5 pipeline folder with random weights (about 4.3 GB in fp32)."""
    import torch
    from diffusers import (
        AutoencoderKL,
        PNDMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from engine.paths import resource as easel_resource
    from tests.helpers.tiny_sd import SD_SCHEDULER

    torch.manual_seed(0)
    pipe = StableDiffusionPipeline(
        unet=UNet2DConditionModel(**SD15_UNET),
        vae=AutoencoderKL(**SD15_VAE),
        text_encoder=CLIPTextModel(CLIPTextConfig(**SD15_TEXT)).eval(),
        tokenizer=CLIPTokenizer.from_pretrained(str(easel_resource("tokenizers", "clip"))),
        scheduler=PNDMScheduler(**SD_SCHEDULER),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(str(folder))
    return folder


def build_flux_reduced(folder: Path) -> Path:
    """FLUX.1 schnell's transformer at full width, 1 double + 1 single block (about 480 M
    parameters); small text encoders with FLUX's widths (CLIP pooled 768, T5 4096) and the tiny
    16-channel VAE: the transformer is what is measured."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextModel

    from tests.helpers import tiny_modern as tm
    from tests.helpers.tiny_sd import _tokenizer

    torch.manual_seed(0)
    t5_tokenizer = tm.t5_tokenizer()
    pipe = FluxPipeline(
        transformer=FluxTransformer2DModel(
            patch_size=1,
            in_channels=64,
            num_layers=1,
            num_single_layers=1,
            attention_head_dim=128,
            num_attention_heads=24,
            joint_attention_dim=4096,
            pooled_projection_dim=768,
            guidance_embeds=False,
            axes_dims_rope=(16, 56, 56),
        ),
        vae=tm._vae(16),
        text_encoder=tm._clip(CLIPTextModel, projection_dim=768, hidden_size=768),
        text_encoder_2=tm._t5_encoder(len(t5_tokenizer), 4096),
        tokenizer=_tokenizer("clip"),
        tokenizer_2=t5_tokenizer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=1.0),
    )
    pipe.save_pretrained(str(folder))
    return folder


def build_sd3_reduced(folder: Path) -> Path:
    """SD3 Medium's transformer width (1536, 24 heads of 64) with 2 joint blocks; text encoders
    with SD3's output widths (pooled 768 + 1280, T5 4096) but 2 small layers; the tiny VAE."""
    import torch
    from diffusers import (
        FlowMatchEulerDiscreteScheduler,
        SD3Transformer2DModel,
        StableDiffusion3Pipeline,
    )
    from transformers import CLIPTextModelWithProjection

    from tests.helpers import tiny_modern as tm
    from tests.helpers.tiny_sd import _tokenizer

    torch.manual_seed(0)
    t5_tokenizer = tm.t5_tokenizer()
    pipe = StableDiffusion3Pipeline(
        transformer=SD3Transformer2DModel(
            sample_size=128,
            patch_size=2,
            in_channels=16,
            num_layers=2,
            attention_head_dim=64,
            num_attention_heads=24,
            caption_projection_dim=1536,
            joint_attention_dim=4096,
            pooled_projection_dim=2048,
            out_channels=16,
            pos_embed_max_size=192,
        ),
        vae=tm._vae(16),
        text_encoder=tm._clip(CLIPTextModelWithProjection, projection_dim=768),
        text_encoder_2=tm._clip(CLIPTextModelWithProjection, projection_dim=1280),
        text_encoder_3=tm._t5_encoder(len(t5_tokenizer), 4096),
        tokenizer=_tokenizer("clip"),
        tokenizer_2=_tokenizer("clip-g"),
        tokenizer_3=t5_tokenizer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
    )
    pipe.save_pretrained(str(folder))
    return folder


def build_tiny(folder: Path) -> Path:
    from tests.helpers.tiny_sd import build_sd1

    return build_sd1(folder)


def make_request(model: Path, size: int, steps: int, threads: int, seed: int = 1234, **runtime):
    from engine.api import GenerationRequest, RuntimeOptions

    modern = _family(model) != "sd"
    return GenerationRequest(
        prompt=PROMPT,
        negative_prompt="" if _family(model) == "flux" else NEGATIVE,
        model=str(model),
        steps=steps,
        width=size,
        height=size,
        seed=seed,
        sampler="Euler" if modern else "Euler a",
        guidance_scale=4.0 if modern else 7.0,
        runtime=RuntimeOptions(device="cpu", precision="fp32", cpu_threads=threads, **runtime),
    )


def _family(model: Path) -> str:
    name = json.loads((Path(model) / "model_index.json").read_text())["_class_name"]
    return "flux" if name.startswith("Flux") else "sd3" if "3" in name else "sd"


def plain_call(pipe, req):
    """What a diffusers user writes for the same request."""
    import torch
    from diffusers import EulerAncestralDiscreteScheduler

    family = _family(Path(req.model))
    if family != "sd":
        pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
        extra = {"max_sequence_length": 256} if family == "flux" else {}
        if family == "sd3":
            extra["negative_prompt"] = req.negative_prompt
        return pipe(
            prompt=req.prompt,
            num_inference_steps=req.steps,
            guidance_scale=req.guidance_scale,
            height=req.height,
            width=req.width,
            generator=[torch.Generator("cpu").manual_seed(req.seed)],
            **extra,
        ).images
    pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(pipe.scheduler.config)
    return pipe(
        prompt=req.prompt,
        negative_prompt=req.negative_prompt,
        num_inference_steps=req.steps,
        guidance_scale=req.guidance_scale,
        height=req.height,
        width=req.width,
        generator=[torch.Generator("cpu").manual_seed(req.seed)],
    ).images


def measure_wall(model: Path, size: int, steps: int, runs: int, threads: int) -> dict:
    """Alternate engine and plain runs on the same loaded modules; medians and image equality."""
    import numpy as np

    from engine.events import Result
    from engine.services import Services
    from engine.worker import Engine

    req = make_request(model, size, steps, threads)
    services = Services()
    engine = Engine(services=services)
    try:
        warm = engine.run(req)  # loads the model into the cache
        assert isinstance(warm, Result), warm
        (key,) = services.cache.keys()  # the one pipeline the engine loaded
        with services.cache.use(key, _not_loaded) as pipe:
            plain_call(pipe, req)  # warm-up for the plain path too
            engine_times, plain_times, same = [], [], True
            for index in range(runs):
                order = ("engine", "plain") if index % 2 == 0 else ("plain", "engine")
                images = {}
                for kind in order:
                    started = time.perf_counter()
                    if kind == "engine":
                        images[kind] = engine.run(req).images[0]
                        engine_times.append(time.perf_counter() - started)
                    else:
                        images[kind] = plain_call(pipe, req)[0]
                        plain_times.append(time.perf_counter() - started)
                same &= np.array_equal(np.asarray(images["engine"]), np.asarray(images["plain"]))
    finally:
        engine.shutdown()
    engine_s, plain_s = statistics.median(engine_times), statistics.median(plain_times)
    return {
        "engine_s": round(engine_s, 3),
        "plain_s": round(plain_s, 3),
        "wall_overhead_pct": round(100 * (engine_s - plain_s) / plain_s, 2),
        "engine_runs_s": [round(t, 3) for t in engine_times],
        "plain_runs_s": [round(t, 3) for t in plain_times],
        "identical_images": bool(same),
    }


def _not_loaded():
    raise RuntimeError("the engine should have loaded the model already")


def child(kind: str, model: Path, size: int, steps: int, threads: int) -> None:
    """Run once in this (fresh) process and print peak RSS: load + generate."""
    req = make_request(model, size, steps, threads)
    started = time.perf_counter()
    if kind == "engine":
        from engine.events import Result
        from engine.worker import Engine

        engine = Engine()
        try:
            assert isinstance(engine.run(req), Result)
        finally:
            engine.shutdown()
    else:
        import diffusers
        import torch

        torch.set_num_threads(threads)
        cls = {"sd": "StableDiffusionPipeline", "flux": "FluxPipeline"}.get(
            _family(model), "StableDiffusion3Pipeline"
        )
        pipe = getattr(diffusers, cls).from_pretrained(
            str(model), dtype=torch.float32, local_files_only=True
        )
        pipe.set_progress_bar_config(disable=True)
        plain_call(pipe, req)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {"peak_rss_mib": round(peak_kib / 1024, 1), "wall_s": time.perf_counter() - started}
        )
    )


def measure_rss(model: Path, size: int, steps: int, threads: int, repeats: int = 2) -> dict:
    peaks: dict[str, list[float]] = {"engine": [], "plain": []}
    for index in range(repeats):
        for kind in ("engine", "plain") if index % 2 == 0 else ("plain", "engine"):
            out = subprocess.run(
                [sys.executable, __file__, "--child", kind, "--model", str(model),
                 "--size", str(size), "--steps", str(steps), "--threads", str(threads)],
                capture_output=True, text=True, check=True, cwd=REPO,
                env={**_environ(), "HF_HUB_OFFLINE": "1"},
            )  # fmt: skip
            peaks[kind].append(json.loads(out.stdout.strip().splitlines()[-1])["peak_rss_mib"])
    engine_mib, plain_mib = min(peaks["engine"]), min(peaks["plain"])
    return {
        "engine_peak_rss_mib": engine_mib,
        "plain_peak_rss_mib": plain_mib,
        "rss_overhead_pct": round(100 * (engine_mib - plain_mib) / plain_mib, 2),
    }


def _environ() -> dict:
    import os

    return dict(os.environ)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["tiny", "sd15", "flux", "sd3"], default=None)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-rss", action="store_true", help="wall time and pixels only")
    parser.add_argument("--child", choices=["engine", "plain"], default=None)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.model, args.size, args.steps, args.threads)
        return
    cases = {
        "tiny": (build_tiny, 64, 10),
        "sd15": (build_sd15_random, 256, args.steps),
        "flux": (build_flux_reduced, 256, args.steps),
        "sd3": (build_sd3_reduced, 256, args.steps),
    }
    results = {}
    with tempfile.TemporaryDirectory(prefix="easel-bench-") as tmp:
        for name, (build, size, steps) in cases.items():
            if args.only and name != args.only:
                continue
            folder = build(Path(tmp) / name)
            print(f"[{name}] {size}x{size}, {steps} steps, {args.threads} threads", flush=True)
            result = measure_wall(folder, size, steps, args.runs, args.threads)
            if not args.skip_rss:
                result.update(measure_rss(folder, size, steps, args.threads))
            results[name] = result
            print(json.dumps({name: result}, indent=2), flush=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
