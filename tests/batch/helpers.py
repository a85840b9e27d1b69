"""Specs and checks shared by the batch tests: the built-in text-to-image model at 64x64 with
DDIM and 4 steps (fast on CPU), one CPU thread so that every process computes alike."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from engine.batch.manifest import read_rows

PROMPTS = ("a red apple", "a rocket", "a smiling face")
SEEDS = (1, 2, 3, 4)
COMMON = {"steps": 4, "width": 64, "height": 64, "sampler": "DDIM", "guidance_scale": 3.0}


def write_grid(folder: Path, prompts=PROMPTS, seeds=SEEDS) -> Path:
    """A TOML grid of len(prompts) x len(seeds) requests for the built-in model."""
    lines = [f"{key} = {json.dumps(value)}" for key, value in COMMON.items()]
    lines += [
        "[grid]",
        'models = ["builtin:emoji-ldm"]',
        f"prompts = {json.dumps(list(prompts))}",
        f"seeds = {json.dumps(list(seeds))}",
    ]
    path = folder / "grid.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def done_rows(out_dir: Path) -> list[dict]:
    return [row for row in read_rows(out_dir) if row.get("status") == "done"]


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def images_by_request(out_dir: Path) -> dict[tuple, np.ndarray]:
    """(prompt, seed) -> pixels, for every image the manifest says is done."""
    return {
        (row["request"]["prompt"], row["seed"]): pixels(out_dir / row["file"])
        for row in done_rows(out_dir)
    }
