"""Image prompts: reference pictures steering an SD 1.x / SDXL job through IP-Adapters.

Two stages, called from engine/sd/control.py like the ControlNet ones:

1. `load_image_prompts` (before the model loads): each prompt's IP-Adapter is found (its own
   reference, or the library's only one for the model's base), its base read from its tensor
   shapes (`to_k_ip`'s input width: 768 SD 1.x, 1024 SD 2.x, 2048 SDXL) and refused by name
   when it is another model's; the reference picture is read; the CLIP image encoder the adapter
   needs is found on disk (an `image_encoder` folder beside the adapter as h94/IP-Adapter ships
   it, `<models>/clip_vision/`, or any encoder the library scan recorded) by the width the
   adapter reads: the projection width for plain adapters, the hidden width for Plus/full-face.
2. `attached_image_prompts` (with the pipeline loaded): the adapter's layers are checked against
   the UNet's cross-attention layers, the encoder comes from the model cache, diffusers'
   `load_ip_adapter` gets the weights as a state dict (nothing is looked up or downloaded),
   `set_ip_adapter_scale` the weights, and the call gets `ip_adapter_image`. On leaving, the
   shared UNet's attention processors and projection and the pipeline's encoder are put back as
   they were, so the cached model gives the same pixels on the next plain job.

Several reference pictures blend as one IP-Adapter per picture (the same weights loaded once per
picture), each with its own scale: every attention layer adds `weight_i * attention(image_i)` to
the text attention. This is what A1111's ControlNet units, InvokeAI and Fooocus do with several
image prompts, each weight acts on its own picture, and weight 0 skips the picture exactly
(diffusers skips a zero scale). diffusers' other option, several pictures in one adapter,
concatenates their tokens under one shared scale: no per-picture weight.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from engine.api import GenerationRequest
from engine.api_control import ImagePrompt
from engine.context import JobContext
from engine.errors import InputError, ModelError
from engine.library.probe import ProbeResult

log = logging.getLogger(__name__)

#: where an IP-Adapter's image encoder is looked for beside it (h94/IP-Adapter's layout)
ENCODER_FOLDER = "image_encoder"
#: the models folder's place for CLIP image encoders (ComfyUI's name for it)
LIBRARY_ENCODER_FOLDER = "clip_vision"
_PROJECTION_ARCHITECTURES = {"CLIPVisionModelWithProjection", "CLIPModel"}
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


# -- the adapter ------------------------------------------------------------------------------
@dataclass(frozen=True)
class AdapterRef:
    """An IP-Adapter weights file and what its tensors say."""

    path: Path
    probe: ProbeResult
    shapes: dict[str, tuple[int, ...]]

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def variant(self) -> str:
        """ "plain", "plus" (a resampler over the encoder's hidden states), "full_face" or
        "faceid" (needs insightface face embeddings, not a picture)."""
        keys = self.shapes
        if any("to_k_lora" in k for k in keys) or any("perceiver_resampler" in k for k in keys):
            return "faceid"
        if "image_proj.proj.weight" in keys:
            return "plain"
        if "image_proj.proj.3.weight" in keys:  # Linear, GELU, Linear, LayerNorm
            return "full_face"
        if "image_proj.proj.0.weight" in keys:  # FaceID's MLP reads an insightface embedding
            return "faceid"
        return "plus"

    @property
    def encoder_need(self) -> tuple[str, int]:
        """Which width of the image encoder the adapter reads, and how wide it must be."""
        for key, what in (
            ("image_proj.proj.weight", "projection_dim"),  # the pooled, projected embedding
            ("image_proj.proj_in.weight", "hidden_size"),  # Plus: the penultimate hidden states
            ("image_proj.proj.0.weight", "hidden_size"),  # full face
        ):
            if key in self.shapes:
                return what, int(self.shapes[key][-1])
        return "hidden_size", 0

    @cached_property
    def layers(self) -> dict[int, tuple[int, ...]]:
        """`to_k_ip` shape (channels, text width) per layer number."""
        found = {}
        for key, shape in self.shapes.items():
            parts = key.split(".")
            if len(parts) == 4 and parts[0] == "ip_adapter" and parts[2] == "to_k_ip":
                found[int(parts[1])] = tuple(shape)
        return dict(sorted(found.items()))


def find_ip_adapter(reference: str, model_base: str) -> AdapterRef:
    """The IP-Adapter an image prompt names, or the library's only one for `model_base`."""
    from engine.library.probe import probe_path
    from engine.library.resolve import model_path
    from engine.sd.control_library import only_suitable

    if not reference:
        path = only_suitable("ip_adapter", model_base)
    else:
        try:
            path = model_path(reference)
        except ModelError:
            raise ModelError(
                f"IP-Adapter model not found: '{reference}'. Give its file, or add it to the "
                "models folder and rescan the library."
            ) from None
    probe = probe_path(path)
    if probe.kind != "ip_adapter":
        what = probe.describe() if probe.kind != "unknown" else f"not a model ({probe.reason})"
        raise ModelError(f"'{path.name}' is {what}, not an IP-Adapter. Pick an IP-Adapter model.")
    return AdapterRef(path=path, probe=probe, shapes=_shapes(path))


def _shapes(path: Path) -> dict[str, tuple[int, ...]]:
    from engine.library.header import read_header
    from engine.library.pickles import SAFETENSORS_SUFFIXES, load_pickle, unwrap_state_dict

    if path.suffix.lower() in SAFETENSORS_SUFFIXES:
        return read_header(path).shapes()
    tensors = unwrap_state_dict(load_pickle(path, map_location="meta"), name=f"'{path.name}'")
    return {key: tuple(value.shape) for key, value in tensors.items()}


def check_adapter_base(ref: AdapterRef, model_base: str) -> None:
    """Refuse, by name, an adapter whose widths say it is for another base (before loading)."""
    from engine.sd.control_models import base_label

    if ref.variant == "faceid":
        raise InputError(
            f"'{ref.name}' is an IP-Adapter FaceID: it reads face embeddings from insightface, "
            "which Easel does not run. Use a plain, Plus or full-face IP-Adapter."
        )
    base = ref.probe.base
    if model_base and base and base != model_base:
        raise InputError(
            f"'{ref.name}': this IP-Adapter is for {base_label(base)}; the model is "
            f"{base_label(model_base)}. Pick an IP-Adapter made for {base_label(model_base)}."
        )


def unet_ip_layers(unet) -> dict[int, tuple[int, int]]:
    """(channels, text width) of each cross-attention layer, numbered as IP-Adapter files
    number them (diffusers' processor order from 1, odd numbers for cross-attention)."""
    blocks = list(unet.config.block_out_channels)
    width = int(unet.config.cross_attention_dim)
    layers, key_id = {}, 1
    for name in unet.attn_processors:
        if name.endswith("attn1.processor") or "motion_modules" in name:
            continue
        if name.startswith("mid_block"):
            channels = blocks[-1]
        elif name.startswith("up_blocks"):
            channels = list(reversed(blocks))[int(name.split(".")[1])]
        else:
            channels = blocks[int(name.split(".")[1])]
        layers[key_id] = (channels, width)
        key_id += 2
    return layers


def check_adapter_fits(ref: AdapterRef, model_base: str, unet) -> None:
    """Refuse an adapter whose layers are not the UNet's (a custom width the probe cannot name)."""
    from engine.sd.control_models import base_label

    wanted = unet_ip_layers(unet)
    if ref.layers == wanted:
        return
    widths = sorted({shape[-1] for shape in ref.layers.values()})
    unet_width = int(unet.config.cross_attention_dim)
    made_for = base_label(ref.probe.base) if ref.probe.base else "another base model"
    raise InputError(
        f"'{ref.name}': this IP-Adapter is for {made_for}; the model is "
        f"{base_label(model_base)} (the adapter has {len(ref.layers)} cross-attention layers of "
        f"text width {'/'.join(map(str, widths)) or '?'}, the model's UNet {len(wanted)} of "
        f"width {unet_width}). Pick an IP-Adapter made for {base_label(model_base)}."
    )


# -- the image encoder ------------------------------------------------------------------------
@dataclass(frozen=True)
class EncoderRef:
    """A CLIP vision model folder on disk."""

    path: Path
    architecture: str
    image_size: int

    @property
    def name(self) -> str:
        return self.path.name if self.path.name != ENCODER_FOLDER else self.path.parent.name

    @property
    def cache_key(self) -> str:
        return f"image_encoder:{self.path}"


def find_image_encoder(adapter: AdapterRef) -> EncoderRef:
    """The image encoder `adapter` reads: beside it, in <models>/clip_vision, or in the library."""
    need, width = adapter.encoder_need
    seen: set[Path] = set()
    for folder in _encoder_candidates(adapter.path):
        key = folder.resolve()
        if key in seen:
            continue
        seen.add(key)
        found = _encoder_if_fits(folder, need, width)
        if found is not None:
            return found
    raise ModelError(missing_encoder_message(adapter, need, width))


def missing_encoder_message(adapter: AdapterRef, need: str, width: int) -> str:
    from engine.paths import models_dir

    which = (
        f"image embeddings {width} wide" if need == "projection_dim" else f"hidden width {width}"
    )
    return (
        f"No CLIP image encoder for the IP-Adapter '{adapter.name}' (it needs a "
        f"CLIPVisionModelWithProjection with {which}; ViT-H/14 for the SD 1.5 and *_vit-h "
        "adapters, ViT-bigG/14 for ip-adapter_sdxl). Put the encoder's folder (config.json and "
        f"model.safetensors, h94/IP-Adapter's 'image_encoder') in "
        f"{models_dir() / LIBRARY_ENCODER_FOLDER} or beside the IP-Adapter file as "
        f"'{ENCODER_FOLDER}', then rescan the library (`easel models scan`)."
    )


def _encoder_candidates(adapter_path: Path) -> Iterator[Path]:
    from engine.paths import models_dir
    from engine.sd.control_library import library_models

    # h94/IP-Adapter: models/ip-adapter_sd15.safetensors beside models/image_encoder, and
    # sdxl_models/image_encoder; one level up for adapters kept in a sub-folder of their own
    for folder in (adapter_path.parent, adapter_path.parent.parent):
        yield folder / ENCODER_FOLDER
    shelf = models_dir() / LIBRARY_ENCODER_FOLDER
    if shelf.is_dir():
        yield shelf
        yield from sorted(p for p in shelf.iterdir() if p.is_dir())
    yield from sorted(library_models("image_encoder"))


def _encoder_if_fits(folder: Path, need: str, width: int) -> EncoderRef | None:
    config = _vision_config(folder)
    if config is None or not any((folder / name).is_file() for name in _WEIGHT_FILES):
        return None
    architecture = str((config.get("architectures") or ["CLIPVisionModel"])[0])
    if need == "projection_dim" and architecture not in _PROJECTION_ARCHITECTURES:
        return None
    vision = config.get("vision_config") if architecture == "CLIPModel" else config
    vision = vision or {}
    have = config.get("projection_dim") if need == "projection_dim" else vision.get("hidden_size")
    if not width or int(have or 0) != width:
        return None
    return EncoderRef(folder, architecture, int(vision.get("image_size") or 224))


def _vision_config(folder: Path) -> dict | None:
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(config, dict):
        return None
    architectures = config.get("architectures") or []
    if config.get("model_type") in {"clip_vision_model", "clip"} or any(
        a in _PROJECTION_ARCHITECTURES | {"CLIPVisionModel"} for a in architectures
    ):
        return config
    return None


def load_image_encoder(ref: EncoderRef, device: torch.device, dtype: torch.dtype):
    """The CLIP vision model in `ref`, offline, on `device` in `dtype`, in eval mode."""
    from transformers import CLIPVisionModel, CLIPVisionModelWithProjection

    cls = (
        CLIPVisionModelWithProjection
        if ref.architecture in _PROJECTION_ARCHITECTURES
        else (CLIPVisionModel)
    )
    try:
        model = cls.from_pretrained(str(ref.path), local_files_only=True, dtype=dtype)
    except Exception as exc:  # transformers raises OSError, ValueError, RuntimeError, ...
        raise ModelError(
            f"The CLIP image encoder '{ref.path}' could not be loaded: "
            f"{str(exc).splitlines()[0][:300]}. The folder may be incomplete or damaged."
        ) from exc
    return model.to(device).eval()


def image_processor(ref: EncoderRef):
    """The picture preprocessing diffusers' `load_ip_adapter` would build (resize and centre crop
    to the encoder's size, CLIP's mean and std): no preprocessor file is needed."""
    try:  # the PIL implementation transformers itself falls back to without torchvision
        from transformers import CLIPImageProcessorPil as Processor
    except ImportError:  # older transformers
        from transformers import CLIPImageProcessor as Processor
    return Processor(size=ref.image_size, crop_size=ref.image_size)


# -- the job's image prompts ------------------------------------------------------------------
@dataclass
class PreparedImagePrompt:
    prompt: ImagePrompt
    adapter: AdapterRef
    image: Image.Image


@dataclass
class ImagePromptInputs:
    """A request's reference pictures, adapters and encoder, checked before the model loads."""

    prompts: list[PreparedImagePrompt] = field(default_factory=list)
    encoder: EncoderRef | None = None

    def __bool__(self) -> bool:
        return bool(self.prompts)

    @property
    def adapters(self) -> list[AdapterRef]:
        """Each distinct adapter once."""
        return list({id(p.adapter): p.adapter for p in self.prompts}.values())


def load_image_prompts(
    request: GenerationRequest, ctx: JobContext, model_base: str
) -> ImagePromptInputs:
    from engine.images import open_user_image

    inputs = ImagePromptInputs()
    adapters: dict[str, AdapterRef] = {}
    for index, prompt in enumerate(request.image_prompts, start=1):
        if prompt.model not in adapters:
            adapters[prompt.model] = find_ip_adapter(prompt.model, model_base)
            check_adapter_base(adapters[prompt.model], model_base)
        image = open_user_image(prompt.image, f"image prompt {index}", mode="RGB")
        ctx.check_cancelled()
        inputs.prompts.append(PreparedImagePrompt(prompt, adapters[prompt.model], image))
    if inputs.prompts and model_base:
        # found now, before the model loads; with the base unknown until the UNet is loaded, the
        # base checks come first, after the load (a wrong adapter is named, not its encoder)
        inputs.encoder = _one_encoder(inputs.adapters)
    return inputs


def _one_encoder(adapters: list[AdapterRef]) -> EncoderRef:
    """diffusers runs one image encoder per pipeline: every adapter must read the same one."""
    needs = {adapter.encoder_need for adapter in adapters}
    if len(needs) > 1:
        names = ", ".join(f"'{a.name}' ({a.encoder_need[1]})" for a in adapters)
        raise InputError(
            f"The image prompts' IP-Adapters read different CLIP image encoders ({names}); use "
            "IP-Adapters of one kind in a request."
        )
    return find_image_encoder(adapters[0])


def image_prompt_info(inputs: ImagePromptInputs) -> dict[str, Any]:
    return {
        "ip_adapters": [item.adapter.name for item in inputs.prompts],
        "image_encoder": inputs.encoder.name if inputs.encoder else "",
    }


# -- with the model loaded --------------------------------------------------------------------
@contextmanager
def attached_image_prompts(
    ctx: JobContext,
    pipe,
    model_base: str,
    inputs: ImagePromptInputs,
    device: torch.device,
    dtype: torch.dtype,
) -> Iterator[dict[str, Any]]:
    """IP-Adapters attached to `pipe` (its UNet is the cached model's) for one job; yields the
    call's extra arguments. Everything is put back on leaving, also after an error."""
    for adapter in inputs.adapters:
        check_adapter_base(adapter, model_base)
        check_adapter_fits(adapter, model_base, pipe.unet)
    if inputs.encoder is None:
        inputs.encoder = _one_encoder(inputs.adapters)
    with _cached_encoder(ctx, inputs.encoder, device, dtype) as encoder:
        saved = _PipelineState.of(pipe)
        try:
            pipe.register_modules(
                image_encoder=encoder, feature_extractor=image_processor(inputs.encoder)
            )
            _load_adapters(pipe, inputs.prompts, dtype)
            pipe.set_ip_adapter_scale([float(p.prompt.weight) for p in inputs.prompts])
            yield {"ip_adapter_image": [p.image for p in inputs.prompts]}
        finally:
            saved.restore(pipe)


def _load_adapters(pipe, prompts: list[PreparedImagePrompt], dtype: torch.dtype) -> None:
    state_dicts = _state_dicts(prompts, dtype)
    try:
        pipe.load_ip_adapter(
            state_dicts,
            subfolder=None,
            weight_name=[None] * len(state_dicts),
            image_encoder_folder=None,
        )
        _check_materialised(pipe.unet)
    except (InputError, ModelError, MemoryError):
        raise
    except Exception as exc:  # KeyError, RuntimeError (shapes), NotImplementedError (meta), ...
        names = ", ".join(sorted({f"'{p.adapter.name}'" for p in prompts}))
        raise ModelError(
            f"The IP-Adapter {names} could not be loaded: its tensors are not the layout "
            f"diffusers reads ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}). The "
            "file may be incomplete, damaged, or a kind of IP-Adapter Easel does not run."
        ) from exc


def _check_materialised(unet) -> None:
    """diffusers builds the adapter's layers empty and fills them from the file; a tensor the
    file lacks stays empty ("meta") and would only fail in the first step."""
    for module in (unet.encoder_hid_proj, *unet.attn_processors.values()):
        if isinstance(module, torch.nn.Module):
            for name, tensor in module.state_dict().items():
                if tensor.is_meta:
                    raise ValueError(f"the file has no tensor for {name}")


@contextmanager
def _cached_encoder(ctx: JobContext, ref: EncoderRef, device, dtype):
    from engine.devices import dtype_name

    key = f"{ref.cache_key}|{device}|{dtype_name(dtype)}"
    if key not in ctx.cache:
        ctx.progress(0, 1, stage="Loading CLIP image encoder…")
    with ctx.cache.use(key, lambda: load_image_encoder(ref, device, dtype)) as model:
        yield model


def _state_dicts(prompts: list[PreparedImagePrompt], dtype: torch.dtype) -> list[dict]:
    """diffusers' IP-Adapter state dict ({"image_proj": ..., "ip_adapter": ...}) per picture;
    one file is read once however many pictures use it."""
    from engine.library.pickles import load_state_dict

    by_path: dict[Path, dict] = {}
    out = []
    for item in prompts:
        path = item.adapter.path
        if path not in by_path:
            flat = load_state_dict(path)  # a ModelError names the file when it is unreadable
            nested: dict[str, dict[str, torch.Tensor]] = {"image_proj": {}, "ip_adapter": {}}
            for key, value in flat.items():
                part, _, rest = key.partition(".")
                if part in nested:
                    nested[part][rest] = value.to(dtype)
            by_path[path] = nested
        out.append(by_path[path])
    return out


@dataclass
class _PipelineState:
    """What attaching IP-Adapters changes on a pipeline and its (shared) UNet."""

    processors: dict
    encoder_hid_proj: Any
    encoder_hid_dim_type: Any
    image_encoder: Any
    feature_extractor: Any

    @classmethod
    def of(cls, pipe) -> _PipelineState:
        unet = pipe.unet
        return cls(
            processors=dict(unet.attn_processors),
            encoder_hid_proj=unet.encoder_hid_proj,
            encoder_hid_dim_type=unet.config.encoder_hid_dim_type,
            image_encoder=getattr(pipe, "image_encoder", None),
            feature_extractor=getattr(pipe, "feature_extractor", None),
        )

    def restore(self, pipe) -> None:
        # diffusers' own unload_ip_adapter rebuilds every processor from its class (losing
        # sliced attention's settings, say); the saved objects go back instead. The projection
        # goes first: a Plus adapter's resampler has attention processors of its own, which
        # would make the processor count differ from the saved one.
        unet = pipe.unet
        unet.encoder_hid_proj = self.encoder_hid_proj
        unet.config.encoder_hid_dim_type = self.encoder_hid_dim_type
        unet.set_attn_processor(dict(self.processors))
        pipe.register_modules(
            image_encoder=self.image_encoder, feature_extractor=self.feature_extractor
        )
