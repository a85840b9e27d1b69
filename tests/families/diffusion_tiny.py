"""Tiny diffusion configs and helpers shared by the ddpm/ldm tests (not a test module)."""

from __future__ import annotations

from pathlib import Path

import torch

from engine.api import RuntimeOptions, TrainingRequest
from engine.families.registry import family_module, full_config
from engine.training.checkpoint import save_model

TINY_UNET = {
    "base_channels": 8,
    "channel_mults": [1, 2],
    "blocks_per_level": 1,
    "attention_levels": [1],
    "head_channels": 8,
}
TINY_SCHEDULE = {"kind": "cosine", "timesteps": 40}
TINY_AE = {"channels": [8, 8], "latent_channels": 4}


def tiny_config(family: str, conditioning: str = "none", classes=(), **overrides) -> dict:
    unet = {**TINY_UNET, "conditioning": conditioning, "num_classes": len(classes)}
    if conditioning == "text":
        unet["cond_dim"] = 384
    config = {
        "resolution": 16,
        "channels": 3,
        "unet": unet,
        "schedule": TINY_SCHEDULE,
        "classes": list(classes),
        "conditioning": conditioning,
    }
    if family == "ldm":
        config["autoencoder"] = TINY_AE
    return full_config(family, {**config, **overrides})


def save_random_model(family: str, folder: Path, seed: int = 0, **kwargs) -> Path:
    """A randomly initialised tiny model written as an Easel model folder.

    The zero-initialised output layers (which make a fresh UNet predict eps = 0) are given small
    random weights so the samplers' outputs depend on the condition, as a trained model's do.
    """
    config = tiny_config(family, **kwargs)
    torch.manual_seed(seed)
    model = family_module(family).build(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.abs().sum() == 0 and p.dim() > 1:
                p.normal_(0, 0.05, generator=torch.Generator().manual_seed(len(name)))
    save_model(folder, model.state_dict(), config)
    return folder


def ldm_training_request(pictures: Path, out: Path, **fields) -> TrainingRequest:
    """A tiny ldm training job at 16 px: 4 autoencoder steps of 8; `extras` merge over."""
    extras = {
        "unet": TINY_UNET,
        "schedule": TINY_SCHEDULE,
        "autoencoder": TINY_AE,
        "ae_steps": 4,
        "warmup_steps": 1,
        **fields.pop("extras", {}),
    }
    fields.setdefault("steps", 8)
    fields.setdefault("batch_size", 6)
    fields.setdefault("sample_every", 1000)
    return TrainingRequest(
        family="ldm",
        data_dir=str(pictures),
        out_dir=str(out),
        resolution=16,
        extras=extras,
        runtime=RuntimeOptions(cpu_threads=1),
        **fields,
    )
