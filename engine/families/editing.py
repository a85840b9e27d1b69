"""Editing pictures with Easel's diffusion families (ddpm in pixels, ldm in latents).

- **Image-to-image** is SDEdit (Meng et al. 2022): noise the picture (or its latent) to the level
  `strength` of the way up the schedule, then denoise from there with the prompt. Strength 1 is a
  fresh picture; 0.3 keeps the layout and colours.
- **Inpaint** is RePaint (Lugmayr et al. 2022): at every step the known region (outside the mask)
  is replaced by the original noised to that step's level, so the model only invents the masked
  part and makes it agree with what surrounds it. `resample_jumps` (extras) re-noises each step
  back and repeats it that many times, RePaint's resampling, which harmonises the seam at the
  cost of more UNet calls. Outpaint is inpaint on a larger canvas whose new border is masked.

The model works at its own resolution. Inpaint scales the picture and mask to it (aspect is
undone on the way back), then puts the result back at the source's size and composites it with
the original through the mask: pixels the user did not mask are the original pixels.
Image-to-image returns the model's size and says so when the source was scaled or cropped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from PIL import Image

from engine.api import Mode
from engine.errors import InputError

#: a latent or pixel is repainted when any part of it is masked more than this
MASK_THRESHOLD = 0.02
MAX_JUMPS = 10


@dataclass
class Space:
    """Where diffusion runs: pixels (ddpm) or an autoencoder's latents (ldm)."""

    encode: Callable[[torch.Tensor], torch.Tensor]  # pictures in [-1, 1] -> diffusion space
    decode: Callable[[torch.Tensor], torch.Tensor]  # diffusion space -> pictures in [-1, 1]
    clip: float | None  # bound on predicted x0 (1.0 for pixels)


@dataclass
class EditInputs:
    """The source at the model's size, the mask there (1 = repaint) and the originals."""

    source: Image.Image  # the user's picture, RGB, original size
    work: Image.Image  # what the model sees, resolution x resolution
    mask: Image.Image | None = None  # "L", source size (inpaint only)
    work_mask: torch.Tensor | None = None  # (1, 1, R, R) in [0, 1]


def load_edit_inputs(request, resolution: int, ctx) -> EditInputs:
    """Read and check the init picture (and mask), scaled to the model's square size."""
    from engine.families.common import fit_square, open_picture
    from engine.images import open_user_image

    source = open_picture(request.init_image, "init image")
    if request.mode is not Mode.INPAINT:
        if source.size != (resolution, resolution):
            shape = "scaled" if source.width == source.height else "scaled and cropped to a square"
            ctx.notice(
                f"This model works at {resolution}x{resolution}: the {source.width}x"
                f"{source.height} picture was {shape} for image-to-image."
            )
        return EditInputs(source=source, work=fit_square(source, resolution))
    mask = open_user_image(request.mask_image, "mask", mode="L")
    if mask.size != source.size:
        raise InputError(
            f"The mask is {mask.width}x{mask.height} but the init image is {source.width}x"
            f"{source.height}; paint the mask on the same image size."
        )
    if mask.getextrema()[1] < 128:
        raise InputError("The mask is empty: paint the area to change in white.")
    size = (resolution, resolution)
    work = source.resize(size, Image.Resampling.LANCZOS)
    # area-average then threshold low: a pixel partly masked at the source size is repainted
    small = mask.resize(size, Image.Resampling.BOX)
    values = torch.frombuffer(bytearray(small.tobytes()), dtype=torch.uint8).float() / 255.0
    return EditInputs(source, work, mask, values.view(1, 1, resolution, resolution))


def edit_pictures(
    unet, config: dict, request, ctx, space: Space, concepts=None, guide=None
) -> list[Image.Image]:
    """Image-to-image or inpaint `request.batch_size` pictures with the diffusion model
    (`guide`: engine.families.autoguide.Autoguide, or None)."""
    from engine.families.common import batch_noise, from_image, image_seeds, to_images

    resolution, channels = int(config["resolution"]), int(config["channels"])
    inputs = load_edit_inputs(request, resolution, ctx)
    ctx.check_cancelled()
    x0 = space.encode(from_image(inputs.work, channels))
    unknown = None
    if inputs.work_mask is not None:
        # a latent cell is repainted if any pixel it covers is masked
        cells = F.adaptive_max_pool2d(inputs.work_mask, x0.shape[-2:])
        unknown = (cells > MASK_THRESHOLD).float()
    noise = batch_noise(tuple(x0.shape[1:]), image_seeds(request.seed, request.batch_size))
    x = sample_edit(
        unet, config, request, ctx, x0.expand_as(noise), noise, unknown, space, concepts, guide
    )
    pictures = to_images(space.decode(x))
    if inputs.mask is None:
        return pictures
    return [composite(inputs.source, picture, inputs.mask) for picture in pictures]


def composite(source: Image.Image, generated: Image.Image, mask: Image.Image) -> Image.Image:
    """The generated picture at the source's size inside the mask, the source outside it."""
    scaled = generated.resize(source.size, Image.Resampling.LANCZOS)
    return Image.composite(scaled, source, mask)


def sample_edit(
    unet, config, request, ctx, x0, noise, unknown, space: Space, concepts=None, guide=None
) -> torch.Tensor:
    """SDEdit from `x0` at the request's strength; with `unknown` (1 = repaint), RePaint."""
    from engine.families.common import generator_for, int_extra, to_images
    from engine.families.ddpm import (
        PREVIEW_EVERY,
        GuidedDenoiser,
        conditions,
        ddim_step,
        ddim_timesteps,
        ddpm_step,
        sampler_options,
        schedule_for,
    )

    options = sampler_options(config, request)
    schedule = schedule_for(config)
    jumps = int_extra(request.extras, "resample_jumps", 0, low=0, high=MAX_JUMPS) or 0
    cond, uncond = conditions(unet, config, request, concepts)
    denoise = GuidedDenoiser(unet, cond, uncond, options["guidance_scale"], guide)
    generator = generator_for(request.seed)
    ddim = options["sampler"] == "DDIM"
    ts = ddim_timesteps(schedule.timesteps, options["steps"]) if ddim else None
    ts = start_timesteps(ts or list(reversed(range(schedule.timesteps))), request.strength)

    def step(x, t, prev):
        if ddim:
            return ddim_step(
                denoise, schedule, x, t, prev, generator, eta=options["eta"], clip=space.clip
            )
        return ddpm_step(denoise, schedule, x, t, generator, space.clip)

    def known_at(level: int) -> torch.Tensor:
        # the known region follows the forward process with each image's own starting noise, so
        # image i of a batch is still the picture a single run with seed + i makes
        if level < 0:
            return x0
        return schedule.add_noise(x0, noise, torch.full((x0.shape[0],), level))

    x = schedule.add_noise(x0, noise, torch.full((x0.shape[0],), ts[0]))
    for index, t in enumerate(ts):
        prev = ts[index + 1] if index + 1 < len(ts) else -1
        for jump in range(jumps + 1):
            x_prev, x0_hat = step(x, t, prev)
            if unknown is not None:
                x_prev = unknown * x_prev + (1 - unknown) * known_at(prev)
            if jump < jumps and prev >= 0 and unknown is not None:
                x = renoise(schedule, x_prev, prev, t, generator)
            else:
                x = x_prev
        ctx.check_cancelled()
        ctx.progress(index + 1, len(ts))
        if (index + 1) % PREVIEW_EVERY == 0 and index + 1 < len(ts):
            ctx.preview(to_images(space.decode(x0_hat[:1]))[0])
    return x


def start_timesteps(timesteps: list[int], strength: float) -> list[int]:
    """The tail of a high-to-low schedule that SDEdit runs for `strength` (at least one step),
    as diffusers' img2img pipelines do: strength 0.5 of 20 steps runs the last 10."""
    count = min(len(timesteps), max(1, round(len(timesteps) * float(strength))))
    return timesteps[len(timesteps) - count :]


def renoise(schedule, x: torch.Tensor, low: int, high: int, generator) -> torch.Tensor:
    """q(x_high | x_low): take a sample back up the schedule (RePaint's resampling jump)."""
    ratio = schedule.abar(torch.tensor([high]))[0] / schedule.abar(torch.tensor([low]))[0]
    fresh = torch.randn(x.shape, generator=generator, dtype=x.dtype)
    return ratio.sqrt() * x + (1 - ratio).sqrt() * fresh
