"""The fast preview decoder: a tiny decoder (AutoencoderTiny / TAESD layout) for live previews and
live painting, about ten times cheaper than the model's own VAE decoder.

Where it comes from, in order:
1. the user's library: TAESD-type weights the scan recorded as kind "taesd" (a diffusers
   AutoencoderTiny folder, or a `taesd_decoder.safetensors`-style file in the original key
   layout), for the model's base or of unknown base;
2. Easel's own decoder distilled from the model's VAE (`engine.sd.distil_decoder`), cached per
   model on disk: loaded when the cache holds one; built by a `PreviewDecoderRequest`
   (`engine.sd.preview_job`: the GUI's "Build fast preview", `easel models distil-preview`),
   never inside a generation job (live painting cancels those at every stroke);
3. otherwise previews stay the linear latent-to-RGB projection (`engine.sd.preview`).

Every decoder here takes the latents the pipeline samples (already multiplied by the VAE's
scaling factor, as TAESD expects) and gives images in [0, 1].
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from engine.errors import ModelError

log = logging.getLogger(__name__)

#: TAESD's own layout (madebyollin/taesd): 64 channels, 3-3-3-1 blocks, three 2x upsamplings
TAESD_CHANNELS = (64, 64, 64, 64)
TAESD_BLOCKS = (3, 3, 3, 1)


@dataclass
class PreviewDecoder:
    """A tiny decoder ready to run; `source` says where it came from (for logs and metadata)."""

    decoder: torch.nn.Module  # diffusers' DecoderTiny: scaled latents -> [-1, 1]
    source: str  # "library:<file name>" or "distilled"
    psnr_db: float | None = None  # against the full VAE decode, when measured

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1], float32, shape (batch, 3, 8h, 8w)."""
        param = next(self.decoder.parameters())
        with torch.inference_mode():
            sample = latents.to(param.device, param.dtype)
            if sample.dim() == 4 and sample.shape[-1] >= 16:
                sample = sample.contiguous(memory_format=torch.channels_last)
            image = self.decoder(sample).float()
        return ((image + 1.0) / 2.0).clamp(0.0, 1.0)

    def preview(self, latents: torch.Tensor, *, index: int = 0) -> Image.Image:
        image = self.decode(latents[index : index + 1])[0]
        pixels = image.permute(1, 2, 0).mul(255).round().to(torch.uint8).cpu().numpy()
        return Image.fromarray(pixels, mode="RGB")


def new_decoder(latent_channels: int = 4, channels=TAESD_CHANNELS, blocks=TAESD_BLOCKS):
    """An untrained decoder in TAESD's layout (diffusers' DecoderTiny)."""
    from diffusers.models.autoencoders.vae import DecoderTiny

    return DecoderTiny(
        in_channels=latent_channels,
        out_channels=3,
        num_blocks=tuple(blocks),
        block_out_channels=tuple(channels),
        upsampling_scaling_factor=2,
        act_fn="relu",
        upsample_fn="nearest",
    )


# -- loading TAESD-type weights ----------------------------------------------------------------
def load_tiny_decoder(path: Path) -> torch.nn.Module:
    """The decoder of a TAESD folder (diffusers AutoencoderTiny) or decoder file; ModelError
    with what is wrong otherwise."""
    path = Path(path)
    try:
        if path.is_dir():
            from diffusers import AutoencoderTiny

            return AutoencoderTiny.from_pretrained(str(path), local_files_only=True).decoder.eval()
        return _decoder_from_file(path)
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - diffusers/safetensors raise many kinds
        raise ModelError(
            f"The preview decoder '{path.name}' could not be loaded ({exc}); remove it from the "
            "models folder or replace it with a TAESD decoder (taesd_decoder.safetensors)."
        ) from exc


def _decoder_from_file(path: Path) -> torch.nn.Module:
    from engine.library.pickles import PICKLE_SUFFIXES, load_pickle, unwrap_state_dict

    if path.suffix.lower() in PICKLE_SUFFIXES:
        state = unwrap_state_dict(load_pickle(path, map_location="cpu"))
    else:
        from safetensors.torch import load_file

        state = load_file(str(path))
    state = decoder_state_dict(state)
    decoder = new_decoder(latent_channels=int(state["layers.0.weight"].shape[1]))
    decoder.load_state_dict(state, strict=True)
    return decoder.eval()


def decoder_state_dict(state: dict) -> dict:
    """DecoderTiny keys from a TAESD decoder file: the original layout numbers the modules of
    one Sequential from a parameter-free Clamp at 0 ("1.weight", "3.conv.0.weight"); diffusers
    drops the Clamp ("layers.0.weight"). AutoencoderTiny files ("decoder.layers...") also work."""
    if any(key.startswith("decoder.layers.") for key in state):
        prefix = "decoder."
        return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    if any(key.startswith("layers.") for key in state):
        return dict(state)
    converted = {}
    for key, value in state.items():
        index, _, rest = key.partition(".")
        if not index.isdigit():
            raise ModelError(f"'{key}' is not a TAESD decoder weight")
        converted[f"layers.{int(index) - 1}.{rest}"] = value
    return converted


def library_decoders(base: str) -> list[Path]:
    """TAESD-type decoders in the library for `base` (or of unknown base), best match first."""
    from engine.sd.control_library import library_models

    found = library_models("taesd", base)
    return sorted(found, key=lambda p: (_recorded_base(p) != base, p.name))


def _recorded_base(path: Path) -> str:
    from engine.library.records import ModelLibrary

    record = ModelLibrary().by_path(path)
    return record.base if record is not None else ""


# -- which decoder a pipeline gets -------------------------------------------------------------
def cache_path(model_key: str, vae) -> Path:
    """Where the decoder distilled for this model's VAE lives: one file per model and VAE shape."""
    from engine.paths import user_data_dir

    shape = f"{vae.config.latent_channels}:{vae.config.block_out_channels}"
    digest = hashlib.sha256(f"{model_key}|{shape}".encode()).hexdigest()[:20]
    return user_data_dir() / "cache" / "preview-decoders" / f"{digest}.safetensors"


def preview_decoder_for(pipe, model_key: str, base: str):
    """The tiny decoder for a loaded pipeline, or None (linear previews). Kept on the pipeline
    once found; while there is none, each job looks again (a decoder distilled by `easel models
    distil-preview` in another process, TAESD weights added to the library)."""
    found = getattr(pipe, "_easel_preview_decoder", None)
    if found is not None:
        return found
    found = _from_library(base) or _from_cache(pipe, model_key)
    if found is not None:
        dtype = pipe.vae.dtype
        found.decoder.to(pipe.vae.device, dtype)
        found.decoder.to(memory_format=torch.channels_last)
        pipe._easel_preview_decoder = found
        log.info("preview decoder: %s", found.source)
    return found


def _from_library(base: str) -> PreviewDecoder | None:
    for path in library_decoders(base):
        try:
            return PreviewDecoder(load_tiny_decoder(path), source=f"library:{path.name}")
        except ModelError as exc:
            log.warning("%s", exc)
    return None


def _from_cache(pipe, model_key: str) -> PreviewDecoder | None:
    from engine.sd.distil_decoder import load_distilled

    path = cache_path(model_key, pipe.vae)
    return load_distilled(path) if path.is_file() else None
