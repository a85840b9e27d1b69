"""ControlNet models from the library: find, check against the base model, load offline, cache.

A ControlNet comes as a diffusers folder (`config.json` + weights) or one `.safetensors` file.
A single file in diffusers' key layout gets its config by matching tensor shapes against the
configs bundled in `resources/configs/controlnet-*` and the config derived from the loaded
model's own UNet (a ControlNet is a copy of its UNet's encoder, so one trained on a custom
UNet matches that); a file in the original (lllyasviel) layout is renamed by diffusers'
converter and matched the same way (else `from_single_file` with the bundled config of its
base). Nothing touches the network.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from engine.errors import InputError, ModelError
from engine.library.probe import BASE_NAMES, ProbeResult, probe_path
from engine.paths import resource

log = logging.getLogger(__name__)

#: bundled ControlNet config per base (built from the bundled UNet configs, see README there)
BUNDLED_CONTROL_CONFIGS = {
    "sd1": "controlnet-sd1",
    "sd2": "controlnet-sd2",
    "sdxl": "controlnet-sdxl",
}
_SD15 = "SD 1.5"


@dataclass(frozen=True)
class ControlModelRef:
    """A ControlNet found on disk and what its tensors say it is."""

    path: Path
    probe: ProbeResult

    @property
    def name(self) -> str:
        return self.path.stem if self.path.is_file() else self.path.name

    @property
    def cache_key(self) -> str:
        return f"controlnet:{self.path}"


def find_controlnet(reference: str) -> ControlModelRef:
    """The ControlNet a unit names (a path, or a library record's name, id or hash)."""
    from engine.library.resolve import model_path

    try:
        path = model_path(reference)
    except ModelError:
        raise ModelError(
            f"ControlNet model not found: '{reference}'. Give its file or folder, or add it to "
            "the models folder and rescan the library."
        ) from None
    probe = probe_path(path)
    if probe.kind != "controlnet":
        what = probe.describe() if probe.kind != "unknown" else f"not a model ({probe.reason})"
        raise ModelError(f"'{path.name}' is {what}, not a ControlNet. Pick a ControlNet model.")
    return ControlModelRef(path=path, probe=probe)


def base_label(base: str) -> str:
    return _SD15 if base == "sd1" else BASE_NAMES.get(base, base or "an unknown base")


def check_fits(ref: ControlModelRef, model_base: str, unet_config) -> None:
    """Refuse a ControlNet made for another base model, by name."""
    sdxl_model = model_base == "sdxl"
    details = ref.probe.details
    control_sdxl = bool(details.get("sdxl"))
    width = int(details.get("context_dim") or 0)
    model_width = int(unet_config.cross_attention_dim)
    if control_sdxl != sdxl_model or (ref.probe.base and ref.probe.base != model_base):
        raise InputError(
            f"'{ref.name}': this ControlNet is for {base_label(ref.probe.base)}; the model is "
            f"{base_label(model_base)}. Pick a ControlNet made for {base_label(model_base)}."
        )
    if width and width != model_width:
        raise InputError(
            f"'{ref.name}': this ControlNet's text width ({width}) does not match the model's "
            f"({model_width}); it was made for another base model."
        )


def load_controlnet(ref: ControlModelRef, unet, dtype: torch.dtype, device: torch.device):
    """The ControlNetModel for `ref`, on `device` in `dtype`, in eval mode."""
    from diffusers import ControlNetModel

    try:
        if ref.path.is_dir():
            model = ControlNetModel.from_pretrained(
                str(ref.path), torch_dtype=dtype, local_files_only=True
            )
        elif ref.probe.details.get("weights") == "diffusers":
            model = _load_diffusers_file(ref, unet, dtype)
        else:
            model = _load_original_file(ref, unet, dtype)
    except (InputError, ModelError, MemoryError):
        raise
    except Exception as exc:  # diffusers raises OSError, ValueError, RuntimeError, ... here
        raise ModelError(
            f"The ControlNet '{ref.name}' could not be loaded: {str(exc).splitlines()[0][:300]}. "
            "The file may be incomplete or damaged."
        ) from exc
    return model.to(device).eval()


def controlnet_config_from_unet(unet_config) -> dict:
    """The ControlNet config diffusers' `ControlNetModel.from_unet` derives from a UNet's."""
    config = dict(unet_config)
    keep = (
        "encoder_hid_dim encoder_hid_dim_type addition_embed_type addition_time_embed_dim "
        "transformer_layers_per_block in_channels flip_sin_to_cos freq_shift down_block_types "
        "only_cross_attention block_out_channels layers_per_block downsample_padding "
        "mid_block_scale_factor act_fn norm_num_groups norm_eps cross_attention_dim "
        "attention_head_dim num_attention_heads use_linear_projection class_embed_type "
        "num_class_embeds upcast_attention resnet_time_scale_shift "
        "projection_class_embeddings_input_dim mid_block_type"
    ).split()
    derived = {name: config[name] for name in keep if name in config}
    derived["in_channels"] = 4  # an inpaint UNet's ControlNets still read the 4 latent channels
    derived.update(
        _class_name="ControlNetModel",
        controlnet_conditioning_channel_order="rgb",
        conditioning_embedding_out_channels=[16, 32, 96, 256],
        conditioning_channels=3,
    )
    return derived


def _load_diffusers_file(ref: ControlModelRef, unet, dtype: torch.dtype):
    from diffusers import ControlNetModel
    from safetensors.torch import load_file

    from engine.library.header import read_header

    shapes = read_header(ref.path).shapes()
    for origin, config in _candidate_configs(ref.probe.base, unet.config):
        if _expected_shapes(config) == shapes:
            log.info("ControlNet %s: config from %s", ref.name, origin)
            model = ControlNetModel.from_config(config)
            model.load_state_dict(load_file(str(ref.path)), strict=True)
            return model.to(dtype)
    raise ModelError(
        f"'{ref.name}' is a ControlNet whose layout matches no ControlNet config Easel knows "
        "(a 'mid' or 'small' SDXL ControlNet, say). Use it as a diffusers folder with its "
        "config.json instead."
    )


def _candidate_configs(base: str, unet_config) -> list[tuple[str, dict]]:
    candidates = []
    bases = [base] if base else list(BUNDLED_CONTROL_CONFIGS)
    for name in bases:
        folder = BUNDLED_CONTROL_CONFIGS.get(name)
        if folder:
            path = resource("configs", folder, "config.json")
            candidates.append((f"bundled {folder}", json.loads(path.read_text(encoding="utf-8"))))
    candidates.append(("the model's UNet", controlnet_config_from_unet(unet_config)))
    return candidates


def _expected_shapes(config: dict) -> dict[str, tuple[int, ...]]:
    """Tensor shapes a ControlNet built from `config` has (built on the meta device: free)."""
    from diffusers import ControlNetModel

    with torch.device("meta"):
        model = ControlNetModel.from_config(config)
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def _load_original_file(ref: ControlModelRef, unet, dtype: torch.dtype):
    """An original-layout (lllyasviel) file: its weights renamed by diffusers' own converter
    for each config Easel knows (the bundled ones of its base, then the one the model's UNet
    implies) until the names and shapes fit exactly; loaded strictly, so nothing is guessed."""
    from diffusers import ControlNetModel
    from diffusers.loaders.single_file_utils import convert_controlnet_checkpoint

    from engine.library.pickles import load_state_dict

    checkpoint = load_state_dict(ref.path)  # safetensors, or a pickle with weights_only
    for origin, config in _candidate_configs(ref.probe.base, unet.config):
        try:
            converted = convert_controlnet_checkpoint(checkpoint, config)
        except (KeyError, IndexError, TypeError):  # the layout of another config
            continue
        expected = _expected_shapes(config)
        converted = {k: v for k, v in converted.items() if v is not None}
        if {k: tuple(v.shape) for k, v in converted.items()} == expected:
            log.info("ControlNet %s (original layout): config from %s", ref.name, origin)
            model = ControlNetModel.from_config(config)
            model.load_state_dict(converted, strict=True)
            return model.to(dtype)
    folder = BUNDLED_CONTROL_CONFIGS.get(ref.probe.base)
    if folder is None:
        raise ModelError(
            f"'{ref.name}' is a ControlNet in the original layout that fits no ControlNet config "
            "Easel knows for this model. Use it as a diffusers folder with its config.json."
        )
    # diffusers' full single-file path knows layouts the plain converter does not (SDXL's
    # label embedding): the bundled config of the file's base
    return ControlNetModel.from_single_file(
        str(ref.path),
        config=str(resource("configs", folder)),
        torch_dtype=dtype,
        local_files_only=True,
    )
