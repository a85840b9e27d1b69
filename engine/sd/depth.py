"""The "depth" preprocessor: a grey-scale depth map (near is white) from Depth Anything or DPT
through transformers' `AutoModelForDepthEstimation`, loaded from local files only.

Where the model comes from, first found wins: the unit's `options["model"]` (a folder), a depth
model in the library (a folder whose config names a depth-estimation architecture), or one of the
published repos already in the Hugging Face cache. Nothing is ever downloaded; with none found
the message says where to put one.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from engine.errors import ModelError

#: published depth models looked up in the Hugging Face cache (local_files_only)
HF_CACHE_REPOS = (
    "depth-anything/Depth-Anything-V2-Small-hf",
    "depth-anything/Depth-Anything-V2-Base-hf",
    "LiheYoung/depth-anything-small-hf",
    "Intel/dpt-hybrid-midas",
    "Intel/dpt-large",
)
_LOADED: dict[str, tuple] = {}  # one depth model kept per source (a few hundred MB at most)


def estimate_depth(image: Image.Image, options: dict) -> Image.Image:
    import torch

    processor, model = _depth_model(str(options.get("model") or ""))
    inputs = processor(images=image, return_tensors="pt")
    with torch.inference_mode():
        predicted = model(**inputs).predicted_depth  # (1, h, w), larger = nearer (disparity)
    depth = torch.nn.functional.interpolate(
        predicted[:, None].float(), size=image.size[::-1], mode="bicubic", align_corners=False
    )[0, 0].numpy()
    low, high = float(depth.min()), float(depth.max())
    scaled = (depth - low) / (high - low) if high > low else np.zeros_like(depth)
    return Image.fromarray((scaled * 255).round().astype(np.uint8), "L").convert("RGB")


def _depth_model(reference: str):
    source = reference or _library_depth_model() or _cached_repo()
    if not source:
        raise ModelError(_missing_message())
    if source not in _LOADED:
        _LOADED.clear()
        _LOADED[source] = _load(source)
    return _LOADED[source]


def _load(source: str):
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        processor = AutoImageProcessor.from_pretrained(source, local_files_only=True)
        model = AutoModelForDepthEstimation.from_pretrained(source, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"The depth model '{source}' could not be loaded: {str(exc).splitlines()[0][:200]}. "
            "It needs config.json, preprocessor_config.json and its weights."
        ) from exc
    return processor, model.eval()


def _library_depth_model() -> str:
    from engine.sd.control_library import library_models

    found = library_models("depth")
    return str(found[0]) if found else ""


def _cached_repo() -> str:
    from engine.library.scan import hf_cache_dir

    root = hf_cache_dir()
    for repo in HF_CACHE_REPOS:
        if (root / ("models--" + repo.replace("/", "--"))).is_dir():
            return repo
    return ""


def _missing_message() -> str:
    from engine.paths import models_dir

    return (
        "The depth preprocessor needs a depth model, and none is on this computer. Put a Depth "
        "Anything or DPT model folder (config.json, preprocessor_config.json, model.safetensors; "
        f"e.g. {HF_CACHE_REPOS[0]}) in {Path(models_dir()) / 'depth'} and rescan the library, "
        "or use a depth map you already have with the preprocessor 'none'."
    )
