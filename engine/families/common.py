"""Small helpers every native family shares: seeds, tensors <-> pictures, grids, init images.

Images inside the families are float tensors in [-1, 1], shape (N, C, H, W); pictures outside
are RGB PIL images. Every random draw goes through an explicit `torch.Generator` (one per image,
seeded `seed + index`) so image i of a batch equals a single image made with seed `seed + i`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from engine.api import MAX_SEED
from engine.errors import InputError
from engine.families.grid import grid_cell, make_grid  # noqa: F401 - re-exported

#: the attribute `registry.load_native_model` sets on every loaded model: its known concepts
#: (engine.text.concepts.ConceptSet from the folder's concepts.safetensors) or None
CONCEPTS_ATTRIBUTE = "known_concepts"


def known_concepts(model: torch.nn.Module):
    """The loaded model's known concepts (None for models without a concept set)."""
    return getattr(model, CONCEPTS_ATTRIBUTE, None)


def image_seeds(seed: int, count: int) -> list[int]:
    """Seeds for a batch: `seed`, `seed + 1`, ... wrapping inside the valid range."""
    return [(seed + i) % (MAX_SEED + 1) for i in range(count)]


def generator_for(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator on the CPU seeded `seed`: the CPU stream is the same on every machine, so a
    seed makes the same picture on CPU, CUDA and MPS (noise is moved to the device after)."""
    del device  # noise is always drawn on the CPU, see above
    return torch.Generator("cpu").manual_seed(int(seed) % (MAX_SEED + 1))


def randn(
    shape: Sequence[int], generator: torch.Generator, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Standard normal noise drawn from `generator` on the CPU, then moved to `device`."""
    return torch.randn(tuple(shape), generator=generator).to(device)


def batch_noise(
    shape: Sequence[int], seeds: Sequence[int], device: torch.device | str = "cpu"
) -> torch.Tensor:
    """One noise tensor of `shape` per seed, stacked: (len(seeds), *shape)."""
    return torch.stack([randn(shape, generator_for(s)) for s in seeds]).to(device)


def to_images(batch: torch.Tensor) -> list[Image.Image]:
    """(N, C, H, W) in [-1, 1] -> RGB PIL images (one channel is shown as grey)."""
    batch = batch.detach().float().cpu().clamp(-1, 1)
    if batch.shape[1] == 1:
        batch = batch.repeat(1, 3, 1, 1)
    pixels = ((batch[:, :3] + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return [Image.fromarray(np.ascontiguousarray(p), "RGB") for p in pixels]


def from_image(image: Image.Image, channels: int = 3) -> torch.Tensor:
    """PIL image -> (1, C, H, W) float tensor in [-1, 1]."""
    mode = "L" if channels == 1 else "RGB"
    array = np.asarray(image.convert(mode), dtype=np.float32)
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0) / 127.5 - 1.0


def open_picture(path: str | Path, what: str = "init image") -> Image.Image:
    """Open a picture the user gave as RGB, or raise InputError saying what is wrong with it."""
    from engine.images import open_user_image

    return open_user_image(path, what, mode="RGB")


def load_square(path: str | Path, resolution: int, channels: int = 3, what: str = "init image"):
    """A picture resized (shorter side) and centre-cropped to `resolution`: (1, C, R, R)."""
    return from_image(fit_square(open_picture(path, what), resolution), channels)


def fit_square(image: Image.Image, resolution: int) -> Image.Image:
    """Resize the shorter side to `resolution` (Lanczos), then centre-crop a square."""
    width, height = image.size
    scale = resolution / min(width, height)
    size = (max(resolution, round(width * scale)), max(resolution, round(height * scale)))
    image = image.resize(size, Image.Resampling.LANCZOS)
    left = (size[0] - resolution) // 2
    top = (size[1] - resolution) // 2
    return image.crop((left, top, left + resolution, top + resolution))


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation (Shoemake 1985; White 2016 "Sampling generative networks"):
    keeps Gaussian latents at a typical norm, unlike a straight line through the origin."""
    a_flat, b_flat = a.flatten(), b.flatten()
    cos = torch.dot(a_flat, b_flat) / (a_flat.norm() * b_flat.norm() + 1e-8)
    omega = torch.arccos(cos.clamp(-1.0, 1.0))
    if omega.abs() < 1e-4:
        return torch.lerp(a, b, t)
    return (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)


def interpolation_weights(count: int) -> list[float]:
    """`count` evenly spaced points from 0 to 1 inclusive (a single image sits at 0)."""
    return [0.0] if count == 1 else [i / (count - 1) for i in range(count)]


def run_in_batches(
    total: int,
    batch_size: int,
    make: Callable[[int, int], list[Image.Image]],
    ctx,
) -> list[Image.Image]:
    """Call `make(start, stop)` per chunk with progress and a cancel check between chunks."""
    images: list[Image.Image] = []
    for start in range(0, total, batch_size):
        ctx.check_cancelled()
        images.extend(make(start, min(total, start + batch_size)))
        ctx.progress(len(images), total)
    return images


def int_extra(extras: dict, name: str, default: int | None, *, low: int, high: int) -> int | None:
    """An integer knob from request.extras, range-checked with a message the user can act on."""
    value = extras.get(name, default)
    if value is None:
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InputError(f"'{name}' must be a whole number (got {value!r}).") from None
    if not low <= number <= high:
        raise InputError(f"'{name}' must be between {low} and {high} (got {number}).")
    return number


def float_extra(extras: dict, name: str, default: float, *, low: float, high: float) -> float:
    """A number knob from request.extras, range-checked with a message the user can act on."""
    value = extras.get(name, default)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"'{name}' must be a number (got {value!r}).") from None
    if not low <= number <= high:
        raise InputError(f"'{name}' must be between {low} and {high} (got {number}).")
    return number
