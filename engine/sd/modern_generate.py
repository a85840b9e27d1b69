"""The SD3 / SD3.5, FLUX.1 and FLUX.2 job: txt2img, img2img and inpaint (FLUX Fill: inpaint).

The same stages and guarantees as `engine.sd.generate` (inputs checked before loading, a cached
base pipeline shared by every mode through `share_pipeline`, per-image CPU generators, cancel within
one step, NaN/black checks, the request that reproduces each image in its metadata). What
differs is read from the family table (`modern_families`): the sampler is the model's own
flow-matching Euler, guidance is classifier-free for SD3 and an input of the transformer for
FLUX dev (a negative prompt then needs `extras["true_cfg_scale"] > 1`), and sizes are multiples
of 16. FLUX Kontext and FLUX.2 edit with the start picture as a reference (no strength).
FLUX.1 Canny / Depth read the request's one control unit's map (engine.sd.flux_control).
Prompts go to the pipeline as text: A1111 weighting syntax is not applied to T5.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from PIL import Image

from engine import devices
from engine.api import GenerationRequest, Mode, round_to_multiple
from engine.context import JobContext
from engine.errors import InputError
from engine.events import Result
from engine.library.resolve import ResolvedModel
from engine.sd import flux_control
from engine.sd.generate import (
    JobInputs,
    batch_seeds,
    check_output,
    image_metadata,
    load_job_inputs,
    model_hash,
    model_name,
    to_pil,
)
from engine.sd.loading import apply_memory_options, cache_key, model_scheduler_config, place
from engine.sd.lora import applied_loras, check_lora_bases
from engine.sd.memory_plan import make_room, plan_for
from engine.sd.model_defaults import apply_model_defaults
from engine.sd.modern_families import FamilySpec, family_spec
from engine.sd.modern_loading import base_pipeline_class, load_modern_pipeline
from engine.sd.sharing import share_pipeline


def generate_modern(request: GenerationRequest, ctx: JobContext, resolved: ResolvedModel):
    started = time.perf_counter()
    spec = family_spec(resolved.base, resolved.variant)
    control_notes: list[str] = []
    if spec.control:
        spec, control_notes = flux_control.prepare(request, spec, resolved.path)
    request = apply_model_defaults(request, spec.defaults)
    request, notes = fit_request(request, spec)
    notes += control_notes
    check_lora_bases(request.loras, spec.base)
    inputs = load_job_inputs(request)
    control_map = flux_control.control_image(request, ctx) if spec.control else None
    device, dtype = devices.prepare(request.runtime)
    ctx.check_cancelled()
    plan = plan_for(resolved, device, dtype, request.runtime, ctx.cache, cached=False)
    key = cache_key(resolved, device, dtype, request.runtime, plan.offload)
    key += f"|skip_t5={request.runtime.skip_t5 and spec.base == 'sd3'}"
    if key not in ctx.cache:
        ctx.progress(0, request.steps, stage=plan.loading_stage(), offload=plan.describe())
        make_room(ctx.cache, plan, device.type)

    def loader():
        pipe = load_modern_pipeline(resolved, dtype, skip_t5=request.runtime.skip_t5)
        pipe.set_progress_bar_config(disable=True)
        pipe._easel_scheduler_config = dict(pipe.scheduler.config)
        place(pipe, device, plan.offload)
        return pipe

    with ctx.cache.use(key, loader) as base_pipe:
        loaded = time.perf_counter()
        ctx.check_cancelled()
        apply_memory_options(base_pipe, request.runtime)
        seeds = batch_seeds(request)
        pipe = pipeline_for_mode(base_pipe, request.mode, spec)
        sampling = time.perf_counter()
        kwargs = call_arguments(request, inputs, spec, seeds)
        if control_map is not None:
            kwargs["control_image"] = control_map
        with applied_loras(pipe, request.loras):
            if spec.base == "flux2":
                encode_flux2_negative(pipe, kwargs)
            output = pipe(**kwargs, **_step_callback(ctx, request)).images
        finished = time.perf_counter()
    check_output(output, dtype)
    timings = {
        "load_s": round(loaded - started, 3),
        "sample_s": round(finished - sampling, 3),
        "total_s": round(time.perf_counter() - started, 3),
    }
    run = {
        "model_name": model_name(resolved),
        "model_hash": model_hash(resolved),
        "base_model": resolved.base,
        "model_variant": spec.variant,
        "device": str(device),
        "dtype": devices.dtype_name(dtype),
        "offload": plan.offload.value,
        "offload_reason": plan.why,
        "guidance_kind": spec.guidance,
    }
    if spec.control:
        run["control_kind"] = spec.control
    if notes:
        run["notes"] = notes
    metadata = [image_metadata(request, i, seed, run, timings) for i, seed in enumerate(seeds)]
    return Result(ctx.job_id, images=to_pil(output), metadata=metadata, info={**run, **timings})


def fit_request(request: GenerationRequest, spec: FamilySpec) -> tuple[GenerationRequest, list]:
    """Refuse what the family cannot run; substitute the sampler it runs (and say so)."""
    if request.mode not in spec.modes:
        modes = ", ".join(m.value for m in spec.modes)
        raise InputError(f"{spec.title} models run {modes}, not {request.mode.value}.")
    for side, value in (("Width", request.width), ("Height", request.height)):
        if value % spec.size_multiple:
            nearest = round_to_multiple(value, spec.size_multiple)
            raise InputError(
                f"{side} {value} is not a multiple of {spec.size_multiple}, which "
                f"{spec.title} models need; use {nearest}."
            )
    if request.loras and not spec.lora:
        raise InputError(f"LoRAs are not applied to {spec.title} models yet; remove them.")
    notes = []
    if request.sampler not in spec.samplers:
        notes.append(
            f"{spec.title} samples with its own flow-matching {spec.defaults.sampler} sampler, "
            f"not {request.sampler}"
        )
        request = request.replace(sampler=spec.defaults.sampler)
    if request.negative_prompt and spec.guidance != "cfg" and not _true_cfg(request) > 1:
        notes.append(f"{spec.title} ignores the negative prompt (no classifier-free guidance)")
    return request, notes


def _true_cfg(request: GenerationRequest) -> float:
    try:
        return float(request.extras.get("true_cfg_scale", 1.0))
    except (TypeError, ValueError):
        raise InputError("true_cfg_scale must be a number (1 turns it off).") from None


def pipeline_for_mode(base_pipe, mode: Mode, spec: FamilySpec):
    """The mode's pipeline sharing the base pipeline's modules, with a fresh scheduler."""
    import diffusers

    config = model_scheduler_config(base_pipe)
    scheduler = type(base_pipe.scheduler).from_config(config)
    name = spec.pipelines[mode]
    if name == base_pipeline_class(spec):
        base_pipe.scheduler = scheduler
        return base_pipe
    return share_pipeline(getattr(diffusers, name), base_pipe, scheduler=scheduler)


def call_arguments(
    request: GenerationRequest, inputs: JobInputs, spec: FamilySpec, seeds: list[int]
) -> dict[str, Any]:
    """Keyword arguments for the mode's pipeline."""
    kwargs: dict[str, Any] = {
        "prompt": request.prompt,
        "num_inference_steps": request.steps,
        "guidance_scale": request.guidance_scale,
        "num_images_per_prompt": request.batch_size,
        "generator": [torch.Generator("cpu").manual_seed(seed) for seed in seeds],
        "height": request.height,
        "width": request.width,
        "output_type": "pt",
    }
    if spec.guidance == "cfg":
        kwargs["negative_prompt"] = request.negative_prompt or None
    elif _true_cfg(request) > 1:
        kwargs.update(negative_prompt=request.negative_prompt, true_cfg_scale=_true_cfg(request))
    if spec.base == "flux":
        kwargs["max_sequence_length"] = 256 if spec.variant == "schnell" else 512
    if request.mode is Mode.IMG2IMG:
        kwargs["image"] = inputs.init_image
        if not spec.reference_edit:
            kwargs["strength"] = request.strength
    elif request.mode is Mode.INPAINT:
        kwargs.update(image=inputs.init_image, mask_image=inputs.mask)
        if spec.variant != "fill":
            kwargs["strength"] = request.strength
    if spec.base == "flux2":
        _flux2_arguments(kwargs, spec)
    return kwargs


#: FLUX.2's image processor refuses reference pictures smaller than this on a side
FLUX2_MIN_REFERENCE = 64


def _flux2_arguments(kwargs: dict, spec: FamilySpec) -> None:
    """FLUX.2 takes no negative prompt text: klein base's CFG runs against "" unless given the
    negative prompt's embeddings, which the job computes with the pipeline's own encoder."""
    if spec.guidance != "cfg" or not kwargs.get("negative_prompt"):
        kwargs.pop("negative_prompt", None)  # else encoded by encode_flux2_negative
    image = kwargs.get("image")
    if image is not None and min(image.size) < FLUX2_MIN_REFERENCE:
        raise InputError(
            f"{spec.title} needs the start picture to be at least {FLUX2_MIN_REFERENCE} pixels "
            f"on each side (it is {image.width}x{image.height}); use a larger picture."
        )


def encode_flux2_negative(pipe, kwargs: dict) -> None:
    """Replace a FLUX.2 negative prompt by its embeddings (the pipeline's own encoder)."""
    negative = kwargs.pop("negative_prompt", None)
    if negative is None or not hasattr(pipe, "encode_prompt"):
        return
    embeds, _ = pipe.encode_prompt(
        prompt=negative,
        device=pipe._execution_device,
        num_images_per_prompt=kwargs["num_images_per_prompt"],
    )
    kwargs["negative_prompt_embeds"] = embeds


def _step_callback(ctx: JobContext, request: GenerationRequest) -> dict[str, Any]:
    def on_step_end(pipe, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        ctx.check_cancelled()  # raises JobCancelled: the pipeline stops, nothing is decoded
        ctx.progress(step + 1, pipe.num_timesteps)
        ctx.preview(_preview(pipe, tensors["latents"], request))
        return {}

    return {"callback_on_step_end": on_step_end, "callback_on_step_end_tensor_inputs": ["latents"]}


def _preview(pipe, latents: torch.Tensor, request: GenerationRequest) -> Image.Image:
    """A rough preview: FLUX's packed latents unpacked, then the first four channels projected
    with SD 1.x's factors (no fitted factors for 16-channel VAEs yet)."""
    from engine.sd.preview import latents_to_preview

    if latents.ndim == 3 and hasattr(pipe, "_unpack_latents"):
        latents = pipe._unpack_latents(
            latents, request.height, request.width, pipe.vae_scale_factor
        )
    elif latents.ndim == 3:  # FLUX.2: tokens in raster order over the 2x2-patched latent grid
        side = pipe.vae_scale_factor * 2
        rows, cols = request.height // side, request.width // side
        latents = latents[:, : rows * cols].transpose(1, 2)
        latents = latents.reshape(latents.shape[0], -1, rows, cols)
    return latents_to_preview(latents, "sd1")
