"""ControlNet overhead: one unit against none on the full-size SD 1.5 architecture.

    python bench/control_overhead.py [--size 256] [--steps 3] [--repeats 3] [--threads 1]

Random weights from the bundled published configs (resources/configs/sd1, controlnet-sd1), saved
to a temporary folder and loaded through the engine as users' models are. Times four runs with
the same prompt, seed and control map: Easel without and with the unit, and diffusers' own
StableDiffusionPipeline / StableDiffusionControlNetPipeline on the same modules. Reported: the
best of --repeats per case (the machine is shared; best is the least disturbed), the time a unit
adds per step for each, and Easel's controlled run against diffusers' (target: within 3 %).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402


def build_sd15(root: Path) -> Path:
    """SD 1.5 with random weights from the bundled configs, saved in fp16 (half the disk)."""
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline
    from diffusers import UNet2DConditionModel as UNet
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from engine.paths import resource

    configs = resource("configs")
    torch.manual_seed(0)
    pipe = StableDiffusionPipeline(
        unet=UNet.from_config(UNet.load_config(configs / "sd1/unet")),
        vae=AutoencoderKL.from_config(AutoencoderKL.load_config(configs / "sd1/vae")),
        text_encoder=CLIPTextModel(CLIPTextConfig.from_pretrained(configs / "sd1/text_encoder")),
        tokenizer=CLIPTokenizer.from_pretrained(str(resource("tokenizers", "clip"))),
        scheduler=PNDMScheduler.from_config(PNDMScheduler.load_config(configs / "sd1/scheduler")),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.to(torch.float16).save_pretrained(str(root / "sd15"))
    return root / "sd15"


def build_models(root: Path) -> tuple[Path, Path]:
    """SD 1.5 and its ControlNet with random weights, saved in fp16 (half the disk)."""
    from diffusers import ControlNetModel

    from engine.paths import resource

    sd15 = build_sd15(root)
    config = json.loads((resource("configs") / "controlnet-sd1" / "config.json").read_text())
    controlnet = ControlNetModel.from_config(config)  # random weights after the pipeline's
    with torch.no_grad():
        for name, param in controlnet.named_parameters():
            if "controlnet_" in name:
                param.normal_(std=0.02)  # zero in training; non-zero so the unit acts
    controlnet.to(torch.float16).save_pretrained(str(root / "controlnet"))
    return sd15, root / "controlnet"


def control_map(size: int, path: Path) -> Path:
    image = Image.new("RGB", (size, size), "black")
    ImageDraw.Draw(image).rectangle(
        (size // 4, size // 4, 3 * size // 4, 3 * size // 4), outline="white", width=3
    )
    image.save(path)
    return path


def easel_seconds(engine, model: Path, controlnet: Path, image: Path, args, units: int) -> float:
    from engine.api import GenerationRequest, RuntimeOptions
    from engine.api_control import ControlUnit

    control = [ControlUnit(image=str(image), model=str(controlnet))] * units
    request = GenerationRequest(
        prompt="a lighthouse at dusk",
        negative_prompt="blurry",
        model=str(model),
        steps=args.steps,
        width=args.size,
        height=args.size,
        seed=1,
        sampler="Euler",
        control=control,
        runtime=RuntimeOptions(device="cpu", precision="fp32", cpu_threads=args.threads),
    )
    result = engine.run(request, timeout=3600)
    return float(result.info["sample_s"])


def diffusers_seconds(pipes, image: Path, args, units: int) -> float:
    pipe = pipes[units]
    # Easel's sample_s starts after the prompt is encoded: time diffusers from the same point
    with torch.inference_mode():
        positive, negative = pipe.encode_prompt("a lighthouse at dusk", "cpu", 1, True, "blurry")
    kwargs = dict(
        prompt_embeds=positive,
        negative_prompt_embeds=negative,
        num_inference_steps=args.steps,
        height=args.size,
        width=args.size,
        guidance_scale=7.0,
        generator=torch.Generator("cpu").manual_seed(1),
        output_type="pt",
    )
    if units:
        kwargs["image"] = Image.open(image).convert("RGB")
    started = time.perf_counter()
    with torch.inference_mode():
        pipe(**kwargs)
    return time.perf_counter() - started


def diffusers_pipes(model: Path, controlnet: Path):
    from diffusers import (
        ControlNetModel,
        EulerDiscreteScheduler,
        StableDiffusionControlNetPipeline,
        StableDiffusionPipeline,
    )

    plain = StableDiffusionPipeline.from_pretrained(
        str(model), torch_dtype=torch.float32, local_files_only=True
    )
    plain.scheduler = EulerDiscreteScheduler.from_config(plain.scheduler.config)
    cn = ControlNetModel.from_pretrained(str(controlnet), torch_dtype=torch.float32)
    controlled = StableDiffusionControlNetPipeline.from_pipe(plain, controlnet=cn)
    for pipe in (plain, controlled):
        pipe.set_progress_bar_config(disable=True)
    return {0: plain, 1: controlled}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from engine.worker import Engine

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        model, controlnet = build_models(root)
        image = control_map(args.size, root / "map.png")
        engine = Engine()
        pipes = diffusers_pipes(model, controlnet)
        best: dict[str, float] = {}
        try:
            easel_seconds(engine, model, controlnet, image, args, 1)  # loads and warms both
            diffusers_seconds(pipes, image, args, 1)
            for _ in range(args.repeats):  # interleaved, so load drifts hit every case alike
                for units in (0, 1):
                    for name, run in (
                        (
                            "easel",
                            lambda u=units: easel_seconds(
                                engine, model, controlnet, image, args, u
                            ),
                        ),
                        ("diffusers", lambda u=units: diffusers_seconds(pipes, image, args, u)),
                    ):
                        seconds = run()
                        key = f"{name}-{units}"
                        best[key] = min(best.get(key, seconds), seconds)
                        print(f"{key}: {seconds:.2f}s", file=sys.stderr)
        finally:
            engine.shutdown(timeout=60)
    per_step = {k: v / args.steps for k, v in best.items()}
    print(f"| case | best of {args.repeats} (s) | per step (s) |")
    print("|---|---|---|")
    for key in ("easel-0", "easel-1", "diffusers-0", "diffusers-1"):
        print(
            f"| {key.replace('-0', ', no unit').replace('-1', ', 1 unit')} | "
            f"{best[key]:.2f} | {per_step[key]:.3f} |"
        )
    easel_added = per_step["easel-1"] - per_step["easel-0"]
    diffusers_added = per_step["diffusers-1"] - per_step["diffusers-0"]
    ratio = best["easel-1"] / best["diffusers-1"]
    print(
        f"\nadded per step: Easel {easel_added:.3f}s, diffusers {diffusers_added:.3f}s; "
        f"Easel with a unit / diffusers with a unit = {ratio:.3f}"
    )


if __name__ == "__main__":
    main()
