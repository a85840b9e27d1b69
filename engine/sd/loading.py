"""Load Stable Diffusion pipelines from disk into the model cache, offline.

One base pipeline (text-to-image class) is cached per model, device, dtype and offload mode;
img2img and inpaint pipelines are built from it with `share_pipeline` (engine/sd/sharing.py),
which shares every module and casts none, so switching modes costs no memory and no load.
Loading never touches the network (`local_files_only=True`; the CLI and app set HF_HUB_OFFLINE
before huggingface_hub loads).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from engine.api import Mode, Offload, RuntimeOptions
from engine.devices import dtype_name
from engine.errors import ModelError
from engine.library.resolve import ResolvedModel
from engine.sd.sharing import share_pipeline

log = logging.getLogger(__name__)

_SD_CLASSES = {
    "StableDiffusionPipeline",
    "StableDiffusionImg2ImgPipeline",
    "StableDiffusionInpaintPipeline",
    "LatentConsistencyModelPipeline",
}
_SDXL_CLASSES = {
    "StableDiffusionXLPipeline",
    "StableDiffusionXLImg2ImgPipeline",
    "StableDiffusionXLInpaintPipeline",
}


@dataclass(frozen=True)
class ModelInfo:
    """What the engine learned about a loaded pipeline."""

    base: str  # "sd1", "sd2" or "sdxl"
    inpaint_unet: bool  # 9 input channels: latents + mask + masked image
    prediction_type: str  # "epsilon" or "v_prediction"


def import_lazy_modules() -> None:
    """Import what diffusers and transformers would otherwise import during the first load.

    Both libraries import most classes on first attribute access. A pipeline's scheduler looks
    up its "compatible" schedulers by name, which imports about fifteen scheduler modules in
    the middle of the first model load; the app calls this on its warm-up thread instead.
    """
    import diffusers
    import transformers
    from diffusers.schedulers.scheduling_utils import KarrasDiffusionSchedulers

    for scheduler in KarrasDiffusionSchedulers:
        getattr(diffusers, scheduler.name, None)
    for name in ("CLIPTokenizer", "CLIPTextModel", "CLIPTextModelWithProjection"):
        getattr(transformers, name, None)


def cache_key(
    resolved: ResolvedModel,
    device: torch.device,
    dtype: torch.dtype,
    runtime,
    offload: Offload | None = None,
) -> str:
    # offload changes how modules are placed, so it is part of the key; on the CPU it does
    # nothing, and a second copy of the same model would only waste RAM
    offload = offload or runtime.offload
    value = offload.value if device.type != "cpu" else Offload.NONE.value
    return f"{resolved.cache_key}|{device}|{dtype_name(dtype)}|offload={value}"


def load_base_pipeline(
    resolved: ResolvedModel,
    device: torch.device,
    dtype: torch.dtype,
    runtime: RuntimeOptions,
    offload: Offload | None = None,
):
    """The text-to-image pipeline for `resolved`, on `device` in `dtype`, placed with `offload`
    (the memory plan's choice; the runtime's setting when not given)."""
    _offline()
    _quiet_library_progress_bars()
    if resolved.layout == "single_file":
        pipe = _load_single_file(resolved.path, dtype)
    else:
        pipe = _load_diffusers_folder(resolved.path, dtype)
    pipe.set_progress_bar_config(disable=True)
    # Jobs swap schedulers on this shared pipeline; each new one is built from the model's own
    # config, never from the previous job's (which would carry its sampler options over).
    # (with its class: few-step detection reads the scheduler a model ships with)
    pipe._easel_scheduler_config = {
        **dict(pipe.scheduler.config),
        "_class_name": type(pipe.scheduler).__name__,
    }
    place(pipe, device, offload or runtime.offload)
    _apply_speed_levers(pipe, device, dtype)
    return pipe


def _apply_speed_levers(pipe, device: torch.device, dtype: torch.dtype) -> None:
    # channels_last and friends, chosen per device and measured (engine/sd/speed.py)
    from engine.sd.speed import apply_speed_plan, plan_for

    apply_speed_plan(pipe, plan_for(device, dtype))


def model_scheduler_config(pipe) -> dict:
    """The scheduler config the model shipped with (before any job changed the scheduler)."""
    return getattr(pipe, "_easel_scheduler_config", None) or dict(pipe.scheduler.config)


def _offline() -> None:
    # The CLI and the app set this before anything imports huggingface_hub; this covers other
    # embedders. Loading itself also passes local_files_only=True.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _quiet_library_progress_bars() -> None:
    # Loading bars from diffusers/transformers would garble the CLI's bar and the app's log.
    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()


def _load_single_file(path: Path, dtype: torch.dtype):
    try:
        from engine.library.single_file import load_single_file_pipeline
    except ImportError:
        raise ModelError(
            f"'{path.name}' is a single checkpoint file; this build of Easel cannot load single "
            "files yet. Use the model in diffusers folder layout (a folder with model_index.json)."
        ) from None
    return as_text_to_image(load_single_file_pipeline(path, torch_dtype=dtype), path)


def as_text_to_image(pipe, path: Path):
    """The text-to-image form of a loaded SD/SDXL pipeline (the cached base for every mode).

    A single file may load as an inpaint or img2img class; the modules are the same, so
    `share_pipeline` re-wraps them. An SDXL refiner (no first text encoder) cannot make images from
    text and is refused.
    """
    import diffusers

    sdxl = getattr(pipe, "text_encoder_2", None) is not None or "XL" in type(pipe).__name__
    if sdxl and getattr(pipe, "text_encoder", None) is None:
        raise ModelError(
            f"'{path.name}' is an SDXL refiner; Easel runs SDXL base models. Pick the base model."
        )
    target = diffusers.StableDiffusionXLPipeline if sdxl else diffusers.StableDiffusionPipeline
    if isinstance(pipe, target):
        return pipe
    return share_pipeline(target, pipe)


def read_model_index(path: Path) -> dict:
    index_file = path / "model_index.json"
    try:
        index = json.loads(index_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(
            f"'{path}' is not a diffusers pipeline folder (no model_index.json). Pick the folder "
            "that contains model_index.json, unet/, vae/ and text_encoder/."
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(
            f"'{index_file}' cannot be read ({exc}); the model folder is broken."
        ) from exc
    if not isinstance(index, dict):
        raise ModelError(f"'{index_file}' should hold a JSON object; the model folder is broken.")
    return index


def pipeline_class_for(index: dict, path: Path):
    """The diffusers text-to-image class for a folder's model_index.json, or ModelError."""
    import diffusers

    name = str(index.get("_class_name", ""))
    if name in _SDXL_CLASSES:
        if index.get("requires_aesthetics_score") or not _has_component(index, "text_encoder"):
            raise ModelError(
                f"'{path.name}' is an SDXL refiner; Easel runs SDXL base models. Pick the base "
                "model (it has text_encoder/ and text_encoder_2/)."
            )
        return diffusers.StableDiffusionXLPipeline
    if name in _SD_CLASSES:
        return diffusers.StableDiffusionPipeline
    raise ModelError(
        f"'{path.name}' holds a '{name or 'unknown'}' pipeline; Easel runs Stable Diffusion 1.x, "
        "2.x and SDXL pipelines."
    )


def _has_component(index: dict, name: str) -> bool:
    entry = index.get(name)
    return isinstance(entry, list) and entry[0] is not None


def _load_diffusers_folder(path: Path, dtype: torch.dtype):
    index = read_model_index(path)
    pipeline_class = pipeline_class_for(index, path)
    options: dict[str, Any] = {"dtype": dtype, "local_files_only": True}
    options.update(_shared_tokenizers(path))
    if "safety_checker" in index:
        # An offline studio shows what it made; the checker would also cost ~1.2 GB of RAM.
        options.update(safety_checker=None, requires_safety_checker=False)
    try:
        return pipeline_class.from_pretrained(str(path), **options)
    except MemoryError:
        raise
    except Exception as exc:  # diffusers raises OSError, ValueError, RuntimeError, ... here
        raise ModelError(
            f"The model in '{path}' could not be loaded: {_first_line(exc)}. The folder may be "
            "incomplete or damaged; copy it again or pick another model."
        ) from exc


def _shared_tokenizers(path: Path) -> dict[str, Any]:
    """The folder's CLIP and T5 tokenizers from the shared cache (built once per distinct
    files)."""
    from engine.sd import tokenizers

    try:
        return tokenizers.folder_tokenizers(path)
    except Exception as exc:  # noqa: BLE001 - let diffusers load it and report the problem
        log.debug("shared tokenizer for %s not used: %s", path, exc)
        return {}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def place(pipe, device: torch.device, offload: Offload) -> None:
    """Move to the device, or set up accelerate's CPU offload (only meaningful on a GPU)."""
    if offload is Offload.AUTO:
        offload = Offload.NONE  # callers resolve AUTO with engine.sd.memory_plan first
    if offload is not Offload.NONE and device.type != "cpu":
        if offload is Offload.MODEL:
            pipe.enable_model_cpu_offload(device=device)
        else:
            pipe.enable_sequential_cpu_offload(device=device)
        return
    if offload is not Offload.NONE:
        log.info("CPU offload has no effect when running on the CPU; ignoring it")
    pipe.to(device)


def model_info(pipe) -> ModelInfo:
    """Base model and variant, read from the modules themselves (never from file names)."""
    unet_config = pipe.unet.config
    if getattr(pipe, "text_encoder_2", None) is not None:
        base = "sdxl"
    elif int(unet_config.cross_attention_dim) == 1024:
        base = "sd2"  # OpenCLIP ViT-H text encoder
    else:
        base = "sd1"
    return ModelInfo(
        base=base,
        inpaint_unet=int(unet_config.in_channels) == 9,
        prediction_type=str(model_scheduler_config(pipe).get("prediction_type", "epsilon")),
    )


def apply_memory_options(pipe, runtime: RuntimeOptions) -> None:
    """Attention slicing and VAE tiling/slicing for this job; cheap toggles on shared modules."""
    wanted = (runtime.attention_slicing, runtime.vae_tiling, runtime.vae_slicing)
    current = getattr(pipe, "_easel_memory_options", (False, False, False))
    if wanted == current:
        return
    if wanted[0] != current[0]:
        if wanted[0]:
            pipe.enable_attention_slicing()
        else:
            pipe.disable_attention_slicing()
    if wanted[1] != current[1]:
        pipe.vae.enable_tiling() if wanted[1] else pipe.vae.disable_tiling()
    if wanted[2] != current[2]:
        pipe.vae.enable_slicing() if wanted[2] else pipe.vae.disable_slicing()
    pipe._easel_memory_options = wanted


def pipeline_for_mode(base_pipe, mode: Mode, info: ModelInfo, scheduler):
    """The pipeline that runs `mode`, sharing the base pipeline's modules.

    An inpaint UNet (9 channels) cannot run the plain text-to-image or img2img pipelines: those
    modes go through the inpaint pipeline with a full mask, as A1111 does.
    """
    import diffusers

    sdxl = info.base == "sdxl"
    if mode is Mode.TXT2IMG and not info.inpaint_unet:
        base_pipe.scheduler = scheduler
        return base_pipe
    if mode is Mode.IMG2IMG and not info.inpaint_unet:
        cls = (
            diffusers.StableDiffusionXLImg2ImgPipeline
            if sdxl
            else (diffusers.StableDiffusionImg2ImgPipeline)
        )
    else:
        cls = (
            diffusers.StableDiffusionXLInpaintPipeline
            if sdxl
            else (diffusers.StableDiffusionInpaintPipeline)
        )
    return share_pipeline(cls, base_pipe, scheduler=scheduler)
