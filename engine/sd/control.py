"""Steering an SD 1.x / SDXL job beyond its prompt: ControlNet units here, image prompts
(IP-Adapter) in engine/sd/image_prompts.py, regional prompts in engine/sd/regions.py and the
hires fix in engine/sd/hires.py.

Two stages, called from engine/sd/generate.py:

1. `load_control_inputs` (before any model loads, so bad input fails fast): each unit's control
   image is read, resized to the output size (the user is told), and turned into its control map
   by its preprocessor; each ControlNet is found and its base checked against the model's.
2. `steering(...)` (a context manager, with the base pipeline loaded): loads the ControlNets
   through the model cache, builds diffusers' ControlNet pipeline for the mode from the loaded
   pipeline's own modules (`share_pipeline`: no second UNet/VAE), attaches IP-Adapters and regional
   attention, and adds their call arguments. On leaving, the shared UNet is restored.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image

from engine.api import GenerationRequest, Mode
from engine.api_control import ControlUnit
from engine.context import JobContext
from engine.errors import InputError
from engine.sd.control_models import ControlModelRef, base_label, check_fits, find_controlnet
from engine.sd.image_prompts import (
    ImagePromptInputs,
    attached_image_prompts,
    image_prompt_info,
    load_image_prompts,
)
from engine.sd.sharing import share_pipeline

_PIPELINES = {  # (sdxl, mode) -> diffusers class name
    (False, Mode.TXT2IMG): "StableDiffusionControlNetPipeline",
    (False, Mode.IMG2IMG): "StableDiffusionControlNetImg2ImgPipeline",
    (False, Mode.INPAINT): "StableDiffusionControlNetInpaintPipeline",
    (True, Mode.TXT2IMG): "StableDiffusionXLControlNetPipeline",
    (True, Mode.IMG2IMG): "StableDiffusionXLControlNetImg2ImgPipeline",
    (True, Mode.INPAINT): "StableDiffusionXLControlNetInpaintPipeline",
}


@dataclass
class PreparedUnit:
    unit: ControlUnit
    ref: ControlModelRef
    control_map: Image.Image


@dataclass
class ControlInputs:
    """Everything a request steers with, read and checked before the model loads."""

    units: list[PreparedUnit] = field(default_factory=list)
    image_prompts: ImagePromptInputs = field(default_factory=ImagePromptInputs)

    @property
    def empty(self) -> bool:
        return not self.units and not self.image_prompts


def load_control_inputs(
    request: GenerationRequest, ctx: JobContext, model_base: str, size: tuple[int, int]
) -> ControlInputs:
    """Control maps, reference pictures and region masks for `request` at output `size`."""
    inputs = ControlInputs()
    for index, unit in enumerate(request.control, start=1):
        if not unit.model:
            raise InputError(f"Control unit {index} needs a ControlNet model.")
        ref = find_controlnet(unit.model)
        _check_base(ref, model_base)
        image = _sized(
            _read(unit.image, f"control image {index}"), size, f"Control image {index}", ctx
        )
        ctx.check_cancelled()
        control_map = _preprocess(unit, image)
        inputs.units.append(PreparedUnit(unit=unit, ref=ref, control_map=control_map))
    inputs.image_prompts = load_image_prompts(request, ctx, model_base)
    return inputs


def _check_base(ref: ControlModelRef, model_base: str) -> None:
    """The early, probe-only check (the UNet's width is compared once it is loaded)."""
    base = ref.probe.base or ("sdxl" if ref.probe.details.get("sdxl") else "")
    if model_base and base and base != model_base:
        raise InputError(
            f"'{ref.name}': this ControlNet is for {base_label(base)}; the model is "
            f"{base_label(model_base)}. Pick a ControlNet made for {base_label(model_base)}."
        )


def _read(path: str, what: str) -> Image.Image:
    from engine.images import open_user_image

    return open_user_image(path, what, mode="RGB")


def _sized(image: Image.Image, size: tuple[int, int], what: str, ctx: JobContext) -> Image.Image:
    """`image` at the output size, stretched as A1111's 'Just Resize' does, with a notice."""
    if image.size == size:
        return image
    ctx.notice(
        f"{what} is {image.size[0]}x{image.size[1]}; it was resized to {size[0]}x{size[1]}, "
        "the output size."
    )
    return image.resize(size, Image.Resampling.LANCZOS)


def _preprocess(unit: ControlUnit, image: Image.Image) -> Image.Image:
    from engine.sd.preprocess import run_preprocessor

    return run_preprocessor(unit.preprocessor, image, unit.options)


# -- with the model loaded ------------------------------------------------------------------
@dataclass
class Steered:
    """The pipeline to call and what to add to its call (and to the prompt embeddings)."""

    pipe: Any
    kwargs: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def finish_kwargs(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """The call's keyword arguments with the steering's added."""
        kwargs.update(self.kwargs)
        return kwargs


@contextmanager
def steering(
    ctx: JobContext,
    request: GenerationRequest,
    pipe,
    base: str,
    inputs: ControlInputs,
    device: torch.device,
    dtype: torch.dtype,
) -> Iterator[Steered]:
    """`pipe` (the mode's pipeline) turned into the steered one for this job."""
    if inputs.empty:
        yield Steered(pipe=pipe)
        return
    with ExitStack() as stack:
        steered = Steered(pipe=pipe)
        if inputs.units:
            models = [
                stack.enter_context(_cached_controlnet(ctx, item.ref, pipe.unet, device, dtype))
                for item in inputs.units
            ]
            for item in inputs.units:
                check_fits(item.ref, base, pipe.unet.config)
            steered.pipe = controlnet_pipeline(pipe, request.mode, base, models)
            steered.kwargs.update(control_arguments(steered.pipe, inputs.units, ctx))
            steered.info["controlnets"] = [item.ref.name for item in inputs.units]
        if inputs.image_prompts:
            # on the pipeline that runs (the ControlNet one when there are units)
            ip = attached_image_prompts(
                ctx, steered.pipe, base, inputs.image_prompts, device, dtype
            )
            steered.kwargs.update(stack.enter_context(ip))
            steered.info.update(image_prompt_info(inputs.image_prompts))
        yield steered


@contextmanager
def _cached_controlnet(ctx: JobContext, ref: ControlModelRef, unet, device, dtype):
    from engine.devices import dtype_name
    from engine.sd.control_models import load_controlnet

    key = f"{ref.cache_key}|{device}|{dtype_name(dtype)}"
    if key not in ctx.cache:
        ctx.progress(0, 1, stage="Loading ControlNet…")
    with ctx.cache.use(key, lambda: load_controlnet(ref, unet, dtype, device)) as model:
        yield model


def controlnet_pipeline(pipe, mode: Mode, base: str, models: list):
    """diffusers' ControlNet pipeline for `mode`, sharing every module of `pipe`."""
    import diffusers
    from diffusers.models.controlnets.multicontrolnet import MultiControlNetModel

    inpaint_unet = int(pipe.unet.config.in_channels) == 9
    run_mode = Mode.INPAINT if inpaint_unet else mode
    cls = getattr(diffusers, _PIPELINES[(base == "sdxl", run_mode)])
    controlnet = models[0] if len(models) == 1 else MultiControlNetModel(models)
    return share_pipeline(cls, pipe, controlnet=controlnet)


def control_arguments(pipe, units: list[PreparedUnit], ctx: JobContext) -> dict[str, Any]:
    """The ControlNet pipelines' call arguments for the units (one value, or one per unit).

    txt2img ControlNet pipelines take the control map as `image`; the img2img and inpaint ones
    take `control_image` (their `image` is the init picture)."""
    maps = [item.control_map for item in units]
    weights = [float(item.unit.weight) for item in units]
    starts = [float(item.unit.start) for item in units]
    ends = [float(item.unit.end) for item in units]
    guess = [item.unit.guess_mode for item in units]
    if len(set(guess)) > 1:
        ctx.notice("Guess mode applies to every ControlNet unit of a request; it was turned on.")
    single = len(units) == 1
    name = type(pipe).__name__
    image_key = "control_image" if ("Img2Img" in name or "Inpaint" in name) else "image"
    return {
        image_key: maps[0] if single else maps,
        "controlnet_conditioning_scale": weights[0] if single else weights,
        "control_guidance_start": starts[0] if single else starts,
        "control_guidance_end": ends[0] if single else ends,
        "guess_mode": any(guess),
    }
