"""Inpaint with the DALL-E family: with the picture as tokens, repainting is "keep the tokens
outside the mask, resample those inside" (Ramesh et al. 2021 showed image completion this way).

The picture is scaled to the model's square size and tokenised; the mask is downscaled to the
token grid, and a token is resampled when any pixel it covers is masked (max-pool, the same
threshold as the diffusion families). Sampling walks the grid in raster order through the KV
cache: a kept token is written as it is (the model still reads it, so what it writes next agrees
with it), a masked one is drawn. The decoded picture is composited back at the source's size
through the mask, so pixels the user did not mask are the original pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from engine.families.editing import MASK_THRESHOLD, composite, load_edit_inputs


def token_mask(work_mask: torch.Tensor, side: int) -> torch.Tensor:
    """(1, 1, R, R) pixel mask in [0, 1] -> (side * side,) bool, True where resampled."""
    cells = F.adaptive_max_pool2d(work_mask, (side, side))
    return (cells > MASK_THRESHOLD).flatten()


def inpaint_tokens(
    model, guide, generators, options, known: torch.Tensor, repaint: torch.Tensor, on_token=None
) -> torch.Tensor:
    """Tokens (B, T): `known` where `repaint` is False, sampled where it is True."""
    from engine.families.dalle import sample_tokens

    keep = (~repaint)[None].expand(known.shape[0], -1)
    return sample_tokens(
        model, guide, generators, options, known=known, keep=keep, on_token=on_token
    )


def inpaint(model, config: dict, request, ctx) -> list:
    """`request.batch_size` pictures: the masked area repainted, the rest the source's."""
    from engine.families.common import (
        from_image,
        generator_for,
        image_seeds,
        known_concepts,
        to_images,
    )
    from engine.families.dalle import GuidedLogits, sampling_options, text_embeddings

    resolution = int(config["resolution"])
    inputs = load_edit_inputs(request, resolution, ctx)
    ctx.check_cancelled()
    device = next(model.parameters()).device
    side = model.grid_side
    known = model.tokenizer.encode(from_image(inputs.work).to(device)).view(1, -1)
    repaint = token_mask(inputs.work_mask.to(device), side)
    seeds = image_seeds(request.seed, request.batch_size)
    options = sampling_options(config, request)
    embeddings = text_embeddings(config, request, known_concepts(model))
    text, negative = (None if t is None else t.to(device) for t in embeddings)
    guide = GuidedLogits(model.transformer, text, negative, len(seeds), options.guidance_scale)

    def progress(position, total):
        ctx.check_cancelled()
        ctx.progress(position, total)

    tokens = inpaint_tokens(
        model.transformer,
        guide,
        [generator_for(s) for s in seeds],
        options,
        known.expand(len(seeds), -1),
        repaint,
        on_token=progress,
    )
    pictures = to_images(model.tokenizer.decode(tokens.view(-1, side, side)))
    return [composite(inputs.source, picture, inputs.mask) for picture in pictures]
