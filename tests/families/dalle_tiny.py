"""Tiny DALL-E family configs and drawn pictures shared by its tests (not a test module)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from engine.families.registry import family_module, full_config
from engine.training.checkpoint import save_model

#: 16x16 pictures -> 4x4 tokens from 32 codes; a 2-layer transformer
TINY_TOKENIZER = {"channels": [8, 16], "codebook_size": 32, "code_dim": 8}
TINY_TRANSFORMER = {"width": 32, "layers": 2, "heads": 2, "prefix_tokens": 2}
TINY_EXTRAS = {
    "tokenizer": TINY_TOKENIZER,
    "transformer": TINY_TRANSFORMER,
    "tokenizer_steps": 3,
    "tokenizer_crop": 0,
    "warmup_steps": 2,
}

COLOURS = {"red": (220, 40, 40), "blue": (40, 60, 220), "green": (40, 200, 60)}
SHAPES = ("circle", "square")


def tiny_config(**overrides) -> dict:
    config = {"resolution": 16, "channels": 3, **TINY_EXTRAS, **overrides}
    return full_config("dalle", config)


def drawn_picture(colour: str, shape: str, size: int = 16, shift: int = 0) -> Image.Image:
    """A coloured circle or square on white, nudged by `shift` pixels."""
    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    box = (2 + shift, 2, size - 3 + shift, size - 3)
    (draw.ellipse if shape == "circle" else draw.rectangle)(box, fill=COLOURS[colour])
    return image


def drawn_set(size: int = 16) -> list[tuple[str, Image.Image]]:
    """(caption, picture) for every colour, shape and a few shifts."""
    return [
        (f"a {colour} {shape}", drawn_picture(colour, shape, size, shift))
        for colour in COLOURS
        for shape in SHAPES
        for shift in (-1, 0, 1)
    ]


def as_batch(pictures) -> torch.Tensor:
    arrays = np.stack([np.asarray(p, np.float32) for p in pictures])
    return torch.from_numpy(arrays).permute(0, 3, 1, 2) / 127.5 - 1.0


def write_captioned(folder: Path, *, sidecars: bool = True) -> Path:
    """The drawn set as PNGs; captions in .txt sidecars, or only in the file names."""
    folder.mkdir(parents=True, exist_ok=True)
    for index, (caption, picture) in enumerate(drawn_set()):
        stem = f"{caption.replace(' ', '_')}-{index}"
        picture.save(folder / f"{stem}.png")
        if sidecars:
            (folder / f"{stem}.txt").write_text(caption, encoding="utf-8")
    return folder


def save_random_model(folder: Path, seed: int = 0, **overrides) -> Path:
    """A randomly initialised tiny model folder, loadable like a trained one."""
    config = tiny_config(**overrides)
    torch.manual_seed(seed)
    model = family_module("dalle").build(config)
    with torch.no_grad():  # spread the codes so different tokens decode to different pixels
        model.tokenizer.codebook.embed.mul_(30)
        # random init gives near-uniform logits, so any prompt would draw the same tokens
        model.transformer.head.weight.mul_(40)
    save_model(folder, model.state_dict(), config)
    return folder
