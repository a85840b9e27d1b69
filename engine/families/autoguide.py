"""Autoguidance (Karras et al. 2024, "Guiding a Diffusion Model with a Bad Version of Itself"):
push each denoising step away from what a weaker copy of the same model predicts.

Classifier-free guidance pushes a sample from the unconditional prediction towards the
conditional one. That sharpens prompt adherence, but the model it pushes away from answers a
different question (no prompt), so it also pushes off the pictures the model knows. Autoguidance
compares the model with a *weaker version of itself on the same question*: an earlier, less
trained checkpoint given the same prompt. Where the two agree the step is left alone; where the
weak one errs (blurred shapes, parts of two emoji mixed) the step goes further the good one's way:

    eps = eps_cfg + (a - 1) * (eps_good(x | c) - eps_weak(x | c))

a = 1 is the plain CFG step. The weak UNet ships in the model folder as GUIDE_FILE (fp16, with
its own UNet config in the file's metadata: Karras et al. find a smaller, shorter-trained copy
guides best, and it is cheaper to run) and loads beside the weights;
`extras["autoguidance"]` (or the model's `autoguidance` setting) is a. It costs one more UNet
evaluation per step (with CFG's two, sampling takes about 1.5x as long).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from engine.errors import InputError, ModelError

if TYPE_CHECKING:  # torch loads lazily: the desktop reads GUIDE_FILE without it
    import torch

GUIDE_FILE = "guide-unet.safetensors"
#: the attribute of a loaded native model holding its WeakCopy (None without GUIDE_FILE)
GUIDE_ATTRIBUTE = "autoguide_weak_copy"
SCALE_EXTRA = "autoguidance"
#: past this the step leaves the data entirely (Karras et al. use 1.5 to 3)
MAX_SCALE = 5.0


@dataclass(frozen=True)
class WeakCopy:
    """The folder's weak UNet, held outside the model's module tree: as a submodule it would
    join the model's state_dict and be saved into model.safetensors by anything that saves it."""

    unet: torch.nn.Module


@dataclass(frozen=True)
class Autoguide:
    """The weak UNet and how far to push away from it (1: not at all)."""

    unet: torch.nn.Module
    scale: float

    def push(self, eps: torch.Tensor, eps_good: torch.Tensor, x, t, cond) -> torch.Tensor:
        """`eps` (the CFG step) moved (scale - 1) times the good-minus-weak difference."""
        return eps + (self.scale - 1.0) * (eps_good - self.unet(x, t, cond))


def denoiser_of(model: torch.nn.Module):
    """The model's diffusion UNet (the model itself for pixel-space DDPM), else None."""
    from engine.families.ddpm import UNet

    unet = getattr(model, "unet", model)
    return unet if isinstance(unet, UNet) else None


def interface(config) -> dict:
    """What a UNet takes and gives (a weak copy must match it; its widths may differ)."""
    names = ("in_channels", "conditioning", "cond_dim", "num_classes")
    return {name: getattr(config, name) for name in names}


def save_guide(folder: str | Path, weak: torch.nn.Module) -> Path:
    """Write a weak UNet (engine.families.ddpm.UNet) into a model folder as GUIDE_FILE: its
    weights in fp16 and its config in the metadata; atomically."""
    import torch
    from safetensors.torch import save

    from engine.paths import atomic_write_bytes

    state = {k: v.detach().to(torch.float16).contiguous() for k, v in weak.state_dict().items()}
    metadata = {"format": "pt", "unet": json.dumps(weak.config.to_dict())}
    return atomic_write_bytes(Path(folder) / GUIDE_FILE, save(state, metadata=metadata))


def load_guide(folder: str | Path, model: torch.nn.Module) -> WeakCopy | None:
    """The folder's weak UNet (eval mode, float32, on the model's device), None without one;
    ModelError when the file is unreadable or does not fit the model's UNet."""
    from safetensors import SafetensorError, safe_open

    from engine.families.ddpm import UNet, UNetConfig

    path = Path(folder) / GUIDE_FILE
    if not path.is_file():
        return None
    unet = denoiser_of(model)
    if unet is None:
        raise ModelError(
            f"'{path}' is a weak UNet for autoguidance, but this model has no diffusion UNet; "
            "delete the file."
        )
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
            state = {k: handle.get_tensor(k).float() for k in handle.keys()}  # noqa: SIM118
        stored = json.loads(header["unet"]) if "unet" in header else unet.config.to_dict()
        weak = UNet(UNetConfig.from_dict(stored))
    except (SafetensorError, OSError, ValueError, TypeError, InputError) as exc:
        raise ModelError(
            f"'{path}' (the model's autoguidance UNet) is not readable ({exc}); delete it to "
            "use the model without autoguidance."
        ) from exc
    if interface(weak.config) != interface(unet.config):  # widths may differ, inputs may not
        raise ModelError(
            f"'{path}' does not fit the model's UNet (it takes {interface(weak.config)}, the "
            f"model {interface(unet.config)}); delete it to use the model without autoguidance."
        )
    try:
        weak.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first_line = str(exc).strip().splitlines()[0]
        raise ModelError(
            f"'{path}' does not fit the model's UNet ({first_line}); delete it to use the "
            "model without autoguidance."
        ) from exc
    return WeakCopy(weak.eval().requires_grad_(False))


def autoguidance_scale(config: dict, request) -> float:
    """The request's `autoguidance` (1..MAX_SCALE), else the model's own default (1: off)."""
    from engine.families.common import float_extra  # lazily: it loads torch, the desktop not

    default = config.get(SCALE_EXTRA, 1.0)
    return float_extra(request.extras or {}, SCALE_EXTRA, default, low=1.0, high=MAX_SCALE)


def autoguide_for(model: torch.nn.Module, config: dict, request) -> Autoguide | None:
    """What the request's sampling pushes away from: None when the model has no weak UNet or
    the scale is 1. A scale asked for on a model without one is refused, not ignored."""
    held = getattr(model, GUIDE_ATTRIBUTE, None)
    asked = SCALE_EXTRA in (request.extras or {})
    scale = autoguidance_scale(config, request)
    if held is None:
        if asked and scale != 1.0:
            raise InputError(
                "This model has no weaker copy to autoguide with (no guide-unet.safetensors in "
                "its folder); set autoguidance to 1 or leave it out."
            )
        return None
    # NativeModel.to moves the weak copy with the model, so it is on the model's device here
    return None if scale == 1.0 else Autoguide(held.unet, scale)


def autoguidance_used(model: torch.nn.Module, config: dict, request) -> dict:
    """For a picture's metadata: the autoguidance scale, when sampling used one."""
    if getattr(model, GUIDE_ATTRIBUTE, None) is None:
        return {}
    scale = autoguidance_scale(config, request)
    return {SCALE_EXTRA: scale} if scale != 1.0 else {}
