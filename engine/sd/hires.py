"""The hires fix: sample at a first-pass size, enlarge, refine with image-to-image, one job.

A1111's order: the request's width and height are the FINAL size; the first pass runs at that
size divided by the hires scale (multiples of 8; the size the model was trained for when the
user chose the scale for it). The first pass's result is enlarged to the final size:

- "latent": its latents are interpolated (bicubic: A1111's "Latent (bicubic)", the name the
  metadata writes) and refined directly; nothing is decoded between the passes.
- "lanczos" or an upscaler model from the library (a path or a library name, found as Upscale
  x2/x4 finds one): the first pass is decoded, enlarged in pixels, resized to the final size.

The second pass is diffusers' image-to-image pipeline (ControlNet img2img when the request has
units) built with `share_pipeline` from the loaded pipeline's own modules (no second UNet or
VAE), at the hires strength, with the same seeds. One progress bar runs over both passes: its
total is the first pass's steps plus the second pass's (the steps left after the strength cut),
counted from the schedulers before sampling starts, so step and total only go up. Cancel is
checked at every step of either pass and between the passes.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image

from engine.api import GenerationRequest, Mode
from engine.api_control import HIRES_UPSCALER_LANCZOS, HIRES_UPSCALERS_LATENT
from engine.context import JobContext
from engine.errors import InputError

UPSCALING_STAGE = "Upscaling for the hires fix…"


def first_pass_size(request: GenerationRequest) -> tuple[int, int]:
    from engine.metadata.a1111_control import first_pass_size as from_final

    size = from_final(request.width, request.height, request.hires.scale)
    assert size is not None  # the request's sizes and scale are checked numbers
    return size


def check_hires(request: GenerationRequest) -> None:
    """Refuse what the hires fix cannot do, before any model loads."""
    if request.hires is None:
        return
    if request.mode is not Mode.TXT2IMG:
        raise InputError(
            "The hires fix runs with text-to-image. For image-to-image or inpaint, set the "
            "size you want directly, or turn the hires fix off."
        )
    width, height = first_pass_size(request)
    if min(width, height) < 64:
        raise InputError(
            f"Hires x{request.hires.scale:g} of {request.width}x{request.height} starts at "
            f"{width}x{height}, too small to sample; choose a smaller hires scale."
        )


def upscaler_of(request: GenerationRequest) -> str:
    """ "latent", "lanczos" (whatever their case, as A1111 files and users write them), or the
    upscaler model's reference as given."""
    upscaler = request.hires.upscaler.strip()
    named = upscaler.lower()
    return named if named in (HIRES_UPSCALERS_LATENT, HIRES_UPSCALER_LANCZOS) else upscaler


def count_steps(scheduler, steps: int, strength: float = 1.0) -> int:
    """How many denoising steps a pipeline call runs: diffusers' own arithmetic (img2img's
    `get_timesteps`) on a copy of the scheduler, so multi-order samplers count right too."""
    probe = copy.deepcopy(scheduler)
    probe.set_timesteps(steps)
    if strength >= 1.0:
        return len(probe.timesteps)
    kept = min(int(steps * strength), steps)
    start = max(steps - kept, 0)
    return len(probe.timesteps[start * probe.order :])


@dataclass
class HiresPass:
    """What both passes need: the job's pieces, handed over by engine/sd/generate.py."""

    ctx: JobContext
    request: GenerationRequest
    base_pipe: Any  # the cached text-to-image pipeline whose modules both passes share
    steered: Any  # engine.sd.control.Steered for the first pass
    control: Any  # engine.sd.control.ControlInputs
    info: Any  # engine.sd.loading.ModelInfo
    seeds: list[int]
    prompt_kwargs: dict[str, Any] = field(default_factory=dict)
    make_scheduler: Any = None  # () -> a fresh scheduler (the second pass must not share state)
    regional: Any = None  # engine.sd.regions.RegionalPrompts or None

    @property
    def pipe(self):
        return self.steered.pipe


def run_hires(job: HiresPass, step_callback) -> tuple[torch.Tensor, dict[str, Any]]:
    """Both passes; returns the final images (as the pipelines' "pt" output) and run info.
    `step_callback(offset=, total=)` gives the pipeline callback arguments for one pass."""
    request, hires = job.request, job.request.hires
    first_w, first_h = first_pass_size(request)
    second_scheduler = job.make_scheduler()
    second_steps = int(hires.steps) or request.steps
    first_count = count_steps(job.pipe.scheduler, request.steps)
    second_count = count_steps(second_scheduler, second_steps, float(hires.strength))
    if second_count < 1:
        raise InputError(
            f"Hires strength {hires.strength:g} with {second_steps} steps leaves no step to "
            "refine; raise the hires strength or the hires steps."
        )
    total = first_count + second_count
    upscaler = upscaler_of(request)
    in_latents = upscaler == HIRES_UPSCALERS_LATENT and not job.info.inpaint_unet
    if upscaler == HIRES_UPSCALERS_LATENT and job.info.inpaint_unet:
        job.ctx.notice(
            "An inpainting model refines pictures, not latents: the hires fix enlarged the "
            "first pass with Lanczos."
        )
    first = _first_pass(job, (first_w, first_h), in_latents, step_callback(offset=0, total=total))
    job.ctx.check_cancelled()
    job.ctx.progress(first_count, total, stage=UPSCALING_STAGE)
    if in_latents:
        enlarged = enlarge_latents(first, _latent_size(job.pipe, request))
    else:
        enlarged = _enlarge_pictures(job, first, first_count, total)
    job.ctx.check_cancelled()
    output = _second_pass(
        job,
        enlarged,
        second_scheduler,
        second_steps,
        step_callback(offset=first_count, total=total),
    )
    info = {
        "hires_first_pass": f"{first_w}x{first_h}",
        "hires_steps_run": [first_count, second_count],
    }
    return output, info


def _latent_size(pipe, request: GenerationRequest) -> tuple[int, int]:
    factor = int(pipe.vae_scale_factor)
    return request.height // factor, request.width // factor


def _set_regions_size(job: HiresPass, width: int, height: int) -> None:
    if job.regional is not None:
        factor = int(job.pipe.vae_scale_factor)
        job.regional.set_latent_size(height // factor, width // factor)


def _first_pass(job: HiresPass, size: tuple[int, int], in_latents: bool, callback: dict):
    from engine.sd.generate import JobInputs, call_arguments

    width, height = size
    first = job.request.replace(width=width, height=height, hires=None)
    kwargs = call_arguments(first, JobInputs(), job.info, job.seeds)
    kwargs.update(job.prompt_kwargs)
    kwargs = job.steered.finish_kwargs(kwargs)
    kwargs["output_type"] = "latent" if in_latents else "pt"
    _set_regions_size(job, width, height)
    return job.pipe(**kwargs, **callback).images


def enlarge_latents(latents: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A1111's "Latent (bicubic)": bicubic interpolation of the latents to (height, width)."""
    return F.interpolate(latents, size=size, mode="bicubic", align_corners=False)


def _enlarge_pictures(job: HiresPass, images: torch.Tensor, step: int, total: int):
    from engine.sd.generate import to_pil

    request = job.request
    size = (request.width, request.height)
    upscaler = upscaler_of(request)
    pictures = to_pil(images)
    if upscaler in (HIRES_UPSCALER_LANCZOS, HIRES_UPSCALERS_LATENT):
        return [picture.resize(size, Image.Resampling.LANCZOS) for picture in pictures]
    from engine.api import UpscaleRequest
    from engine.upscale import upscale_with_model

    upscale = UpscaleRequest(image="first pass", model=upscaler, runtime=request.runtime)
    tiles = _TileProgress(job.ctx, step, total)
    enlarged = []
    for picture in pictures:
        result, _ = upscale_with_model(upscale, picture, tiles)
        enlarged.append(result.resize(size, Image.Resampling.LANCZOS))
    return enlarged


class _TileProgress:
    """The upscaler's per-tile progress shown as a stage at the job's current step (the job's
    step/total stay those of the two sampling passes)."""

    def __init__(self, ctx: JobContext, step: int, total: int):
        self.ctx, self.step, self.total = ctx, step, total

    def __getattr__(self, name: str):
        return getattr(self.ctx, name)  # the model cache, cancel checks, notices: the job's

    def progress(self, done: int, tiles: int, **_: Any) -> None:
        self.ctx.progress(self.step, self.total, stage=f"{UPSCALING_STAGE} ({done}/{tiles})")


def second_pass_pipeline(job: HiresPass, scheduler):
    """The image-to-image pipeline from the loaded modules, with the first pass's ControlNets."""
    from engine.sd.control import controlnet_pipeline
    from engine.sd.loading import pipeline_for_mode

    pipe = pipeline_for_mode(job.base_pipe, Mode.IMG2IMG, job.info, scheduler)
    controlnet = getattr(job.pipe, "controlnet", None)
    if controlnet is not None and not job.control.empty:
        nets = list(getattr(controlnet, "nets", [controlnet]))
        pipe = controlnet_pipeline(pipe, Mode.IMG2IMG, job.info.base, nets)
    return pipe


#: what an IP-Adapter adds to a pipeline besides the UNet's processors (engine/sd/image_prompts)
_IMAGE_PROMPT_MODULES = ("image_encoder", "feature_extractor")


def _second_pass(job: HiresPass, enlarged, scheduler, steps: int, callback: dict):
    from engine.sd.control import control_arguments

    request = job.request
    pipe = second_pass_pipeline(job, scheduler)
    kwargs: dict[str, Any] = {
        "image": enlarged,
        "strength": float(request.hires.strength),
        "num_inference_steps": steps,
        "guidance_scale": request.guidance_scale,
        "num_images_per_prompt": request.batch_size,
        "generator": [torch.Generator("cpu").manual_seed(seed) for seed in job.seeds],
        "output_type": "pt",
    }
    if job.info.inpaint_unet:  # an inpaint UNet refines everything, as in its txt2img
        whole = Image.new("L", (request.width, request.height), 255)
        kwargs.update(mask_image=whole, height=request.height, width=request.width)
    # what else steers (an IP-Adapter's arguments) carries over; the control maps are passed
    # under the img2img pipelines' own name
    kwargs.update(
        {k: v for k, v in job.steered.kwargs.items() if k not in ("image", "control_image")}
    )
    if job.control.units:
        kwargs.update(control_arguments(pipe, job.control.units, job.ctx))
    kwargs.update(job.prompt_kwargs)
    _set_regions_size(job, request.width, request.height)
    # an image prompt's encoder was registered on the first pass's pipeline only: lend it to
    # this one for the call (share_pipeline built it from the model's own modules, without it)
    saved = {name: getattr(pipe, name, None) for name in _IMAGE_PROMPT_MODULES}
    pipe.register_modules(**{n: getattr(job.pipe, n, None) for n in _IMAGE_PROMPT_MODULES})
    try:
        return pipe(**kwargs, **callback).images
    finally:
        pipe.register_modules(**saved)
