"""Upscaler models through `spandrel` (ESRGAN/Real-ESRGAN, SwinIR, HAT, SPAN, Compact, ...).

spandrel's package `__init__` imports every architecture it knows, and two of them (LaMa,
RestoreFormer: an inpainter and a face restorer, neither an upscaler) import torchvision at module
level. Easel must not depend on torchvision (PyPI's build fails beside our torch), so spandrel is
installed with `--no-deps` and, when torchvision is missing, this module imports spandrel's
helper modules directly and builds its own registry from the architectures that import without
it. Weights are read by Easel (safetensors, or `torch.load(weights_only=True)`), never by
spandrel's own loader, which would run TorchScript from `.pt` files.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

from engine.errors import ModelError

#: spandrel architectures in its own detection order (spandrel.__helpers.main_registry),
#: minus LaMa and RestoreFormer which need torchvision.
ARCHITECTURES = (
    "Compact",
    "SwiftSRGAN",
    "HAT",
    "GRL",
    "Swin2SR",
    "SwinIR",
    "GFPGAN",
    "OmniSR",
    "SCUNet",
    "FBCNN",
    "Uformer",
    "RGT",
    "DAT",
    "CRAFT",
    "KBNet",
    "DITN",
    "MMRealSR",
    "SPAN",
    "RealCUGAN",
    "SAFMN",
    "SAFMNBCIE",
    "DCTLSA",
    "FFTformer",
    "NAFNet",
    "ATD",
    "MixDehazeNet",
    "DRUNet",
    "DnCNN",
    "IPT",
    "DRCT",
    "ESRGAN",
    "PLKSR",
    "RetinexFormer",
    "HVICIDNet",
    "SeemoRe",
    "MoSR",
    "MoESR",
    "RCAN",
    "FDAT",
    "AuraSR",
)


def _import_spandrel_parts():
    """spandrel's registry helpers, importing its package `__init__` only if torchvision is
    there; otherwise register a bare package object so submodules import on their own."""
    if importlib.util.find_spec("spandrel") is None:
        raise ModelError(
            "Upscaler models need the 'spandrel' package. Install it with "
            "`pip install --no-deps spandrel einops` and try again."
        )
    if "spandrel" not in sys.modules and importlib.util.find_spec("torchvision") is None:
        spec = importlib.util.find_spec("spandrel")
        package = importlib.util.module_from_spec(spec)
        sys.modules["spandrel"] = package  # without running __init__ (see module docstring)
    registry = importlib.import_module("spandrel.__helpers.registry")
    canonicalize = importlib.import_module("spandrel.__helpers.canonicalize")
    return registry, canonicalize


@lru_cache(maxsize=1)
def spandrel_registry():
    """An `ArchRegistry` of every spandrel architecture that imports here."""
    registry_module, _ = _import_spandrel_parts()
    registry = registry_module.ArchRegistry()
    for name in ARCHITECTURES:
        try:
            module = importlib.import_module(f"spandrel.architectures.{name}")
        except ImportError:  # an architecture needing a package we do not ship
            continue
        arch_class = getattr(module, f"{name}Arch", None)
        if arch_class is not None:
            registry.add(registry_module.ArchSupport.from_architecture(arch_class()))
    return registry


def detect_architecture(state_dict: dict[str, Any]) -> str | None:
    """Name of the spandrel architecture whose key/shape rules match (meta tensors are fine)."""
    _, canonicalize = _import_spandrel_parts()
    state_dict = canonicalize.canonicalize_state_dict(dict(state_dict))
    for support in spandrel_registry().architectures("detection"):
        try:
            if support.detect(state_dict):
                return str(support.architecture.id)
        except Exception:  # noqa: BLE001 - a detector tripping on odd shapes means "not me"
            continue
    return None


def load_upscaler(path: str | Path):
    """Load an upscaler file into a spandrel `ImageModelDescriptor` (eval mode, CPU)."""
    from engine.library.pickles import load_state_dict

    path = Path(path)
    state_dict = load_state_dict(path)
    _, canonicalize = _import_spandrel_parts()
    state_dict = canonicalize.canonicalize_state_dict(state_dict)
    for support in spandrel_registry().architectures("detection"):
        if support.detect(state_dict):
            try:
                descriptor = support.architecture.load(state_dict)
            except Exception as exc:  # noqa: BLE001 - spandrel raises many kinds on bad weights
                raise ModelError(
                    f"'{path.name}' looks like a {support.architecture.name} upscaler but its "
                    f"weights do not fit ({exc}). The file may be damaged."
                ) from exc
            if not hasattr(descriptor, "scale") or descriptor.purpose not in {"SR", "Restoration"}:
                raise ModelError(
                    f"'{path.name}' is a {support.architecture.name} model for "
                    f"{descriptor.purpose}, not an upscaler."
                )
            return descriptor.eval()
    raise ModelError(
        f"'{path.name}' is not an upscaler Easel recognises (ESRGAN, Real-ESRGAN, SwinIR, HAT, "
        "SPAN and other spandrel architectures are supported)."
    )
