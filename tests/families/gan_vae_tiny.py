"""Tiny GAN/VAE configs and helpers shared by tests/families and tests/training (not a test).

Models are built with random weights from these configs, saved through the real folder format
and loaded back through `resolve_model`/`generate_native`, as users' models are.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from engine.context import JobContext
from engine.families.registry import family_module, full_config
from engine.training.checkpoint import save_model

RESOLUTION = 16
TINY = {
    "dcgan": {"z_dim": 8, "g_width": 8, "d_width": 8},
    "stylegan": {
        "z_dim": 16,
        "w_dim": 16,
        "mapping_layers": 2,
        "channel_base": 128,
        "channel_max": 16,
    },
    "cyclegan": {"g_width": 8, "d_width": 8, "resnet_blocks": 1, "d_layers": 2},
    "vae": {"width": 8, "latent_dim": 8},
    "beta-vae": {"width": 8, "latent_dim": 8},
    "nvae": {"width": 8, "latent_channels": 4, "groups_per_scale": 1, "kl_warmup_steps": 10},
}
GAN_VAE_FAMILIES = tuple(TINY)


def tiny_config(family: str, **overrides) -> dict:
    config = {**TINY[family], "resolution": RESOLUTION, "channels": 3, "classes": []}
    return full_config(family, {**config, **overrides})


def save_random_model(family: str, folder: Path, seed: int = 0, **overrides) -> Path:
    """A randomly initialised tiny model written as an Easel model folder."""
    config = tiny_config(family, **overrides)
    torch.manual_seed(seed)
    model = family_module(family).build(config)
    save_model(folder, model.state_dict(), config)
    return folder


def write_pictures(folder: Path, count: int = 8, *, seed: int = 0, size=(20, 18)) -> Path:
    """Red pictures with a yellow square at a random place: a learnable little data set."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for index in range(count):
        pixels = np.zeros((size[1], size[0], 3), np.uint8)
        pixels[...] = (220, 40, 40)
        y, x = rng.integers(1, min(size) - 7, 2)
        pixels[y : y + 6, x : x + 6] = (250, 230, 30)
        Image.fromarray(pixels).save(folder / f"picture_{index:02d}.png")
    return folder


class RecordingContext(JobContext):
    """A JobContext that keeps its events and can cancel itself after `cancel_after` progress
    reports (the cancel lands between two steps, as a user's click would)."""

    def __init__(self, cancel_after: int | None = None):
        self.events: list = []
        self.cancel_after = cancel_after
        super().__init__(1, self._record, cancel_event=threading.Event())

    def _record(self, event) -> None:
        self.events.append(event)
        progress = self.steps()
        if self.cancel_after is not None and len(progress) >= self.cancel_after:
            self.cancel_event.set()

    def of_type(self, name: str) -> list:
        return [e for e in self.events if type(e).__name__ == name]

    def steps(self) -> list:
        """Progress of the steps themselves, not stage reports such as "loading model"."""
        return [e for e in self.of_type("Progress") if not e.info.get("stage")]


def same_pictures(a: Image.Image, b: Image.Image, tolerance: int = 0) -> bool:
    diff = np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16))
    return a.size == b.size and int(diff.max()) <= tolerance
