"""The Stable Diffusion job: txt2img, img2img and inpaint for SD 1.x, 2.x and SDXL.

Stages: check inputs (before any model loads, so bad input fails fast) -> device and dtype ->
cached base pipeline -> the mode's pipeline with a fresh scheduler -> LoRAs -> prompt embeddings
-> sample with a step callback (cancel, progress, preview) -> check the output -> images and
per-image metadata.

Reproducibility: image i of a batch uses its own CPU `torch.Generator` seeded with seed + i, so the
same request gives the same pixels, and CPU-side noise keeps seeds meaning the same on every device.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from engine import devices
from engine.api import MAX_SEED, GenerationRequest, Mode
from engine.context import JobContext
from engine.errors import InputError, OutputError
from engine.events import Result
from engine.library.resolve import ResolvedModel
from engine.native_memory import return_freed_memory
from engine.sd.control import load_control_inputs, steering
from engine.sd.hires import HiresPass, check_hires, run_hires
from engine.sd.loading import (
    ModelInfo,
    apply_memory_options,
    cache_key,
    load_base_pipeline,
    model_info,
    model_scheduler_config,
    pipeline_for_mode,
)
from engine.sd.lora import applied_loras, check_lora_bases
from engine.sd.preview import latents_to_preview
from engine.sd.prompts import encode_prompts
from engine.sd.regions import encode_regions, load_regions, regional_attention
from engine.sd.samplers import make_scheduler

log = logging.getLogger(__name__)


@dataclass
class JobInputs:
    """Images a job starts from, already checked and at the requested size."""

    init_image: Image.Image | None = None
    mask: Image.Image | None = None


def generate_sd(request: GenerationRequest, ctx: JobContext, resolved: ResolvedModel) -> Result:
    from engine.sd.modern_families import MODERN_BASES

    if resolved.base in MODERN_BASES:
        from engine.sd.modern_generate import generate_modern

        return generate_modern(request, ctx, resolved)
    started = time.perf_counter()
    if resolved.base:
        check_lora_bases(request.loras, resolved.base)
    check_hires(request)
    inputs = load_job_inputs(request)
    control = load_control_inputs(request, ctx, resolved.base, (request.width, request.height))
    regions = load_regions(request, ctx, (request.width, request.height))
    device, dtype = devices.prepare(request.runtime)
    ctx.check_cancelled()
    plan = _memory_plan(resolved, device, dtype, request, ctx)
    key = cache_key(resolved, device, dtype, request.runtime, plan.offload)
    fresh = key not in ctx.cache
    if fresh:
        ctx.progress(0, request.steps, stage=plan.loading_stage(), offload=plan.describe())
        make_room(ctx.cache, plan, device.type)

    def loader():
        return load_base_pipeline(resolved, device, dtype, request.runtime, plan.offload)

    with ctx.cache.use(key, loader) as base_pipe:
        loaded = time.perf_counter()
        ctx.check_cancelled()
        info = model_info(base_pipe)
        if fresh:  # RAM is measured before a load only: the choice stays with the model
            base_pipe._easel_free_text_encoder = plan.free_text_encoder
        apply_memory_options(base_pipe, request.runtime)
        request, few_step = _few_step_settings(request, base_pipe, resolved)
        seeds = batch_seeds(request)

        def new_scheduler():
            return make_scheduler(
                request.sampler,
                model_scheduler_config(base_pipe),
                seeds=seeds,
                overrides=few_step.scheduler_options if few_step else None,
            )

        previewer = _preview_decoder(base_pipe, resolved, info, request, ctx)
        pipe = pipeline_for_mode(base_pipe, request.mode, info, new_scheduler())
        with (
            steering(ctx, request, pipe, info.base, control, device, dtype) as steered,
            applied_loras(steered.pipe, request.loras),
        ):
            pipe = steered.pipe
            embeds = encode_prompts(
                pipe, request.prompt, request.negative_prompt, clip_skip=request.clip_skip
            )
            regional = encode_regions(pipe, request, regions)
            _free_text_encoders_if_short(base_pipe)
            sampling = time.perf_counter()
            # the tiny decoder makes the picture (live painting); a hires job decodes in full
            fast = request.runtime.fast_decode and previewer is not None and not request.hires
            callback = partial(_step_callback, ctx, info, previewer)
            with regional_attention(pipe.unet, regional):
                if request.hires is None:
                    output = _single_pass(
                        request, inputs, info, seeds, steered, embeds, callback, fast
                    )
                    output = previewer.decode(output) if fast else output
                else:
                    job = HiresPass(ctx, request, base_pipe, steered, control, info, seeds)
                    job.prompt_kwargs, job.make_scheduler = embeds.as_kwargs(), new_scheduler
                    job.regional = regional
                    output, hires_info = run_hires(job, callback)
                    steered.info.update(hires_info)
        finished = time.perf_counter()
    check_output(output, dtype)
    images = to_pil(output)
    timings = {
        "load_s": round(loaded - started, 3),
        "sample_s": round(finished - sampling, 3),
        "total_s": round(time.perf_counter() - started, 3),
    }
    run = {
        "model_name": model_name(resolved),
        "model_hash": model_hash(resolved),
        "base_model": info.base,
        "device": str(device),
        "dtype": devices.dtype_name(dtype),
        "prompt_chunks": embeds.chunks,
        "offload": plan.offload.value,
        "offload_reason": plan.why,
        **steered.info,
    }
    if fast:
        run["decoder"] = previewer.source
    if few_step is not None:
        run.update(few_step=few_step.kind, few_step_source=few_step.source)
    metadata = [image_metadata(request, i, seed, run, timings) for i, seed in enumerate(seeds)]
    info = {**run, **timings}
    if (
        request.runtime.fast_decode
        and previewer is None
        and base_pipe.vae.config.latent_channels == 4
    ):
        info["preview_decoder"] = "missing"  # the GUI offers to build one (PreviewDecoderRequest)
    return Result(ctx.job_id, images=images, metadata=metadata, info=info)


def _single_pass(request, inputs, info, seeds, steered, embeds, callback, latents: bool):
    """One sampling pass; `latents`: return the latents (for the tiny decoder), not pixels."""
    kwargs = call_arguments(request, inputs, info, seeds)
    kwargs.update(embeds.as_kwargs())
    kwargs = steered.finish_kwargs(kwargs)
    if latents:
        kwargs["output_type"] = "latent"
    return steered.pipe(**kwargs, **callback()).images


def _preview_decoder(base_pipe, resolved: ResolvedModel, info: ModelInfo, request, ctx):
    """The tiny decoder for previews (and the final picture with `fast_decode`), or None: the
    library's TAESD weights or one distilled earlier (`easel models distil-preview`). A job
    never distils one itself: live painting cancels a job at every stroke, and minutes of
    distillation inside it would never finish; without one the full VAE decodes (with a note)."""
    from engine.sd.tiny_decoder import preview_decoder_for

    if base_pipe.vae.config.latent_channels != 4:
        return None
    found = preview_decoder_for(base_pipe, resolved.cache_key, info.base)
    if found is None and request.runtime.fast_decode:
        ctx.notice(
            "No fast preview decoder for this model: the full VAE decodes each picture. Put "
            "TAESD weights (taesd_decoder.safetensors) in the model library, or build one with "
            "`easel models distil-preview MODEL` (once per model)."
        )
    return found


def _free_text_encoders_if_short(base_pipe) -> None:
    # the embeddings exist now; a freed encoder reads its weights back on its next call
    from engine.sd import text_encoder_release

    if text_encoder_release.wanted(getattr(base_pipe, "_easel_free_text_encoder", False)):
        text_encoder_release.release_text_encoders(base_pipe)


def make_room(cache, plan, device_type: str) -> None:
    from engine.sd import memory_plan

    memory_plan.make_room(cache, plan, device_type)


def _memory_plan(resolved, device, dtype, request, ctx):
    from engine.sd.loading import cache_key as key_for
    from engine.sd.memory_plan import plan_for

    # a model already loaded under the setting's placement needs no RAM check
    cached = key_for(resolved, device, dtype, request.runtime) in ctx.cache
    return plan_for(resolved, device, dtype, request.runtime, ctx.cache, cached=cached)


def _few_step_settings(request: GenerationRequest, pipe, resolved: ResolvedModel):
    """The request with the model's few-step settings where it leaves them to the model."""
    from engine.sd import fewstep
    from engine.sd.model_defaults import apply_model_defaults

    loras = [Path(lora.path) for lora in request.loras]
    found = fewstep.detect(pipe, resolved.path, resolved.layout, loras)
    return apply_model_defaults(request, found.defaults if found else None), found


def batch_seeds(request: GenerationRequest) -> list[int]:
    """Image i uses seed + i (wrapping at the largest seed, so every seed stays valid)."""
    return [(request.seed + i) % (MAX_SEED + 1) for i in range(request.batch_size)]


# -- inputs -----------------------------------------------------------------------------------
def load_job_inputs(request: GenerationRequest) -> JobInputs:
    if request.mode is Mode.TXT2IMG:
        return JobInputs()
    init = read_image(request.init_image, "init image").convert("RGB")
    mask = None
    if request.mode is Mode.INPAINT:
        mask = read_image(request.mask_image, "mask").convert("L")
        if mask.size != init.size:
            raise InputError(
                f"The mask is {mask.size[0]}x{mask.size[1]} but the init image is "
                f"{init.size[0]}x{init.size[1]}; paint the mask on the same image size."
            )
        if mask.getextrema()[1] < 128:
            raise InputError("The mask is empty: paint the area to change in white.")
    size = (request.width, request.height)
    if init.size != size:
        init = init.resize(size, Image.Resampling.LANCZOS)
        mask = mask.resize(size, Image.Resampling.BILINEAR) if mask is not None else None
    return JobInputs(init_image=init, mask=mask)


def read_image(path_text: str | None, what: str) -> Image.Image:
    from engine.images import open_user_image

    return open_user_image(path_text or "", what, mode=None)


# -- sampling ---------------------------------------------------------------------------------
def call_arguments(
    request: GenerationRequest, inputs: JobInputs, info: ModelInfo, seeds: list[int]
) -> dict[str, Any]:
    """Keyword arguments for the mode's pipeline (prompt embeddings are added by the caller)."""
    kwargs: dict[str, Any] = {
        "num_inference_steps": request.steps,
        "guidance_scale": request.guidance_scale,
        "num_images_per_prompt": request.batch_size,
        "generator": [torch.Generator("cpu").manual_seed(seed) for seed in seeds],
        "output_type": "pt",  # checked for NaN before it becomes 8-bit pixels
    }
    size = {"height": request.height, "width": request.width}
    if request.mode is Mode.TXT2IMG and not info.inpaint_unet:
        kwargs.update(size)
    elif request.mode is Mode.IMG2IMG and not info.inpaint_unet:
        kwargs.update(image=inputs.init_image, strength=request.strength)
    elif request.mode is Mode.INPAINT:
        kwargs.update(size, image=inputs.init_image, mask_image=inputs.mask)
        kwargs["strength"] = request.strength
    else:
        # an inpaint UNet in txt2img/img2img: inpaint everything (A1111 does the same)
        image = inputs.init_image or Image.new("RGB", (request.width, request.height), "gray")
        whole = Image.new("L", image.size, 255)
        strength = request.strength if request.mode is Mode.IMG2IMG else 1.0
        kwargs.update(size, image=image, mask_image=whole, strength=strength)
    return kwargs


def _step_callback(
    ctx: JobContext,
    info: ModelInfo,
    previewer=None,
    *,
    offset: int = 0,
    total: int | None = None,
) -> dict[str, Any]:
    """diffusers' `callback_on_step_end`: cancel within one step, progress and a preview (the
    tiny decoder's where there is one, else the linear projection). `offset`/`total`: where
    this pass's steps sit on a job's one progress bar (hires fix)."""

    def on_step_end(pipe, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        ctx.check_cancelled()  # raises JobCancelled: the pipeline stops, nothing is decoded
        whole = total if total is not None else pipe.num_timesteps
        ctx.progress(min(offset + step + 1, whole), whole)
        if previewer is not None and ctx.preview_due():
            ctx.preview(previewer.preview(tensors["latents"]))
        elif previewer is None:
            ctx.preview(latents_to_preview(tensors["latents"], info.base))
        if step + 1 == pipe.num_timesteps:
            # the VAE decode comes next, where a job's memory peaks: first hand back what the
            # steps' freed activations left in the heap (engine.native_memory)
            return_freed_memory()
        return {}

    return {"callback_on_step_end": on_step_end, "callback_on_step_end_tensor_inputs": ["latents"]}


def check_output(images: torch.Tensor, dtype: torch.dtype) -> None:
    """Refuse NaN or all-black results (a VAE overflowing in fp16, a broken model)."""
    if torch.isnan(images).any():
        raise OutputError(
            "The model produced NaN values instead of an image"
            + _precision_hint(dtype)
            + " If it persists, the model file may be damaged."
        )
    if (images.flatten(1).amax(dim=1) == 0).any():
        raise OutputError(
            "The model produced an all-black image" + _precision_hint(dtype) + " Otherwise try "
            "another seed, and check that the model and its VAE are not damaged."
        )


def _precision_hint(dtype: torch.dtype) -> str:
    if dtype == torch.float16:
        return (
            ": in fp16 the VAE often overflows. Set Precision to fp32 (or bf16) in Settings, or "
            "pass --precision fp32."
        )
    return "."


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    # the same conversion diffusers applies for output_type="pil"
    from diffusers.image_processor import VaeImageProcessor

    return VaeImageProcessor.numpy_to_pil(VaeImageProcessor.pt_to_numpy(images))


# -- metadata ---------------------------------------------------------------------------------
def image_metadata(
    request: GenerationRequest, index: int, seed: int, run: dict, timings: dict
) -> dict[str, Any]:
    """The request that reproduces image `index` alone, plus what was resolved at run time."""
    data = request.replace(seed=seed, batch_size=1).to_dict()
    data.update(run)
    data.update(
        batch_index=index, batch_total=request.batch_size, batch_seed=request.seed, timings=timings
    )
    return data


def model_name(resolved: ResolvedModel) -> str:
    path = resolved.path
    return path.stem if resolved.layout == "single_file" else path.name


def model_hash(resolved: ResolvedModel) -> str:
    """A1111's short model hash (first 10 hex digits of SHA-256) for single files, else ''."""
    if resolved.layout != "single_file":
        return ""
    from engine.library.hashing import cached_short_hash

    return cached_short_hash(resolved.path)
