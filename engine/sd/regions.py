"""Regional prompts: a prompt per masked area, in one sampling pass, by attention masking.

Every cross-attention layer of the UNet (`attn2`) gets a wrapper around its own processor. The
wrapper lets the layer attend to the base prompt as usual (the unchanged processor, so a job
whose regions all weigh 0 is pixel for pixel the job without regions), then, for the
conditional half of the batch only (the negative prompt stays the negative prompt's), attends
the same image queries to each region's prompt and blends:

    out = base + sum_r c_r * (region_r - base),   c_r = weight_r * mask_r / max(1, sum_s mask_s)

with each mask averaged down to the layer's own resolution (8x, 16x, 32x, ... smaller than the
picture). Overlapping regions share their area instead of adding up. A region's text is its own
prompt followed by the base prompt, so the style and subject the base prompt sets carry into
the region (Krita AI Diffusion does the same).

The wrapped processor is called for the regions too, so whatever the layer runs (SDPA, sliced
attention, an IP-Adapter processor with its image tokens) runs for the region prompts as well.
On leaving `regional_attention` the original processors are put back: the cached UNet is clean.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from engine.api import GenerationRequest
from engine.api_control import Region
from engine.context import JobContext

log = logging.getLogger(__name__)

#: a mask whose brightest pixel is below this grey level (of 255) has nothing painted on it
EMPTY_MASK_LEVEL = 4


@dataclass
class PreparedRegion:
    index: int  # 1-based, as the user numbers them
    region: Region
    mask: torch.Tensor  # (H, W) in [0, 1] at the output size


def load_regions(
    request: GenerationRequest, ctx: JobContext, size: tuple[int, int]
) -> list[PreparedRegion]:
    """The request's regions with their masks read and sized; empty ones dropped with a note."""
    from engine.images import open_user_image

    prepared = []
    for index, region in enumerate(request.regions, start=1):
        image = open_user_image(region.mask, f"mask of region {index}", mode="L")
        if image.size != size:
            ctx.notice(
                f"The mask of region {index} is {image.size[0]}x{image.size[1]}; it was resized "
                f"to {size[0]}x{size[1]}, the output size."
            )
            image = image.resize(size, Image.Resampling.BILINEAR)
        if image.getextrema()[1] < EMPTY_MASK_LEVEL:
            ctx.notice(f"Region {index} has an empty mask and was ignored; paint its area white.")
            continue
        if not region.prompt.strip():
            ctx.notice(f"Region {index} has no prompt and was ignored.")
            continue
        mask = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0)
        prepared.append(PreparedRegion(index=index, region=region, mask=mask))
    return prepared


def region_text(region: Region, base_prompt: str) -> str:
    """What a region's area is conditioned on: its prompt, then the base prompt."""
    return ", ".join(text for text in (region.prompt.strip(), base_prompt.strip()) if text)


@dataclass
class RegionalPrompts:
    """What the wrapped cross-attention layers of one job share."""

    embeds: list[torch.Tensor]  # per region (1, tokens, dim), as the UNet takes prompts
    weights: list[float]
    masks: torch.Tensor  # (regions, H, W) in [0, 1] at the output size
    images: int  # images per prompt: the batch is [negative x images, positive x images]
    latent_size: tuple[int, int] = (0, 0)  # the pass's latent height and width
    _coefficients: dict[tuple, torch.Tensor | None] = field(default_factory=dict)
    _unmatched: set[int] = field(default_factory=set)

    def set_latent_size(self, height: int, width: int) -> None:
        """Called before each sampling pass (the hires fix samples at two sizes)."""
        self.latent_size = (int(height), int(width))

    def coefficients(self, tokens: int, like: torch.Tensor) -> torch.Tensor | None:
        """(regions, 1, tokens, 1) blend weights for a layer with `tokens` image positions."""
        key = (tokens, self.latent_size, like.device, like.dtype)
        if key not in self._coefficients:
            self._coefficients[key] = self._layer_coefficients(tokens, like)
        return self._coefficients[key]

    def _layer_coefficients(self, tokens: int, like: torch.Tensor) -> torch.Tensor | None:
        size = layer_size(self.latent_size, tokens)
        if size is None:
            if tokens not in self._unmatched:  # say it once per layer size, not per step
                self._unmatched.add(tokens)
                log.warning("regional prompts: no layer size gives %d positions", tokens)
            return None
        masks = F.adaptive_avg_pool2d(self.masks[None], size)[0]  # (regions, h, w)
        share = masks / masks.sum(dim=0, keepdim=True).clamp_min(1.0)
        weights = torch.tensor(self.weights, dtype=share.dtype)[:, None, None]
        coefficients = (weights * share).reshape(len(self.weights), 1, tokens, 1)
        return coefficients.to(device=like.device, dtype=like.dtype)


def layer_size(latent_size: tuple[int, int], tokens: int) -> tuple[int, int] | None:
    """The (height, width) of a UNet level with `tokens` positions: the latent halved (rounding
    up, as the stride-2 convolutions do) until the count matches."""
    height, width = latent_size
    while height >= 1 and width >= 1:
        if height * width == tokens:
            return height, width
        if height * width < tokens or (height == 1 and width == 1):
            return None
        height, width = -(-height // 2), -(-width // 2)
    return None


class RegionalAttention:
    """A cross-attention processor: the layer's own one, plus the regions' prompts blended in."""

    def __init__(self, inner: Any, regions: RegionalPrompts):
        self.inner = inner
        self.regions = regions

    def __call__(
        self,
        attn,
        hidden_states: torch.Tensor,
        encoder_hidden_states: Any = None,
        attention_mask: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        out = self.inner(
            attn,
            hidden_states,
            encoder_hidden_states=encoder_hidden_states,
            attention_mask=attention_mask,
            **kwargs,
        )
        if encoder_hidden_states is None or hidden_states.ndim != 3:
            return out
        return self._blend(attn, hidden_states, encoder_hidden_states, out, kwargs)

    def _blend(self, attn, hidden_states, encoder_hidden_states, out, kwargs) -> torch.Tensor:
        regions = self.regions
        batch, images = hidden_states.shape[0], regions.images
        if batch not in (images, 2 * images):
            return out  # not a layout this job made (no CFG: all positive; CFG: neg + pos)
        coefficients = regions.coefficients(hidden_states.shape[1], out)
        if coefficients is None:
            return out
        positive = slice(batch - images, batch)
        queries, base = hidden_states[positive], out[positive]
        blended = base
        for index, embeds in enumerate(regions.embeds):
            prompt = embeds.to(device=base.device, dtype=_text_dtype(encoder_hidden_states))
            region_states = _with_text(encoder_hidden_states, prompt.expand(images, -1, -1), batch)
            region_out = self.inner(attn, queries, encoder_hidden_states=region_states, **kwargs)
            blended = blended + coefficients[index] * (region_out - base)
        if batch == images:
            return blended
        return torch.cat([out[: batch - images], blended])


def _text_dtype(encoder_hidden_states: Any) -> torch.dtype:
    text = encoder_hidden_states[0] if isinstance(encoder_hidden_states, tuple) else None
    return (text if text is not None else encoder_hidden_states).dtype


def _with_text(encoder_hidden_states: Any, text: torch.Tensor, batch: int) -> Any:
    """The layer's encoder input with the text part replaced by a region's prompt, for the
    positive half: an IP-Adapter's (text, [image tokens]) keeps its positive image tokens."""
    if not isinstance(encoder_hidden_states, tuple):
        return text
    _, image_tokens = encoder_hidden_states
    images = text.shape[0]
    positive = [tokens[batch - images : batch] for tokens in image_tokens]
    return (text, positive)


def encode_regions(pipe, request: GenerationRequest, regions: list[PreparedRegion]):
    """The regions' prompt embeddings with the job's text encoders (LoRAs applied)."""
    from engine.sd.prompts import encode_prompts

    if not regions:
        return None
    embeds = [
        encode_prompts(
            pipe, region_text(item.region, request.prompt), "", clip_skip=request.clip_skip
        ).prompt_embeds
        for item in regions
    ]
    factor = int(pipe.vae_scale_factor)
    return RegionalPrompts(
        embeds=embeds,
        weights=[float(item.region.weight) for item in regions],
        masks=torch.stack([item.mask for item in regions]),
        images=request.batch_size,
        latent_size=(request.height // factor, request.width // factor),
    )


@contextmanager
def regional_attention(unet, regions: RegionalPrompts | None) -> Iterator[None]:
    """Every cross-attention layer of `unet` wrapped for `regions`, restored afterwards."""
    if regions is None:
        yield
        return
    layers = _cross_attention_layers(unet)
    originals = {name: layer.processor for name, layer in layers.items()}
    try:
        for name, layer in layers.items():
            layer.set_processor(RegionalAttention(originals[name], regions))
        yield
    finally:
        for name, layer in layers.items():
            layer.set_processor(originals[name])


def _cross_attention_layers(unet) -> dict[str, Any]:
    from diffusers.models.attention_processor import Attention

    return {
        name: module
        for name, module in unet.named_modules()
        if name.endswith("attn2") and isinstance(module, Attention)
    }
