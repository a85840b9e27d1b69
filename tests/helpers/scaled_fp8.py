"""Write a state dict as ComfyUI's "scaled fp8" files are laid out.

ComfyUI's converters store each linear layer's weight as float8_e4m3fn divided by a float32
per-tensor scale (absmax / 448, 448 being e4m3's largest value) kept beside it as
`<layer>.scale_weight`, plus a `[<prefix>]scaled_fp8` marker tensor. Embeddings, norms and
biases stay in their own dtype (ComfyUI scales linear layers only).
"""

from __future__ import annotations

import numpy as np
import torch

E4M3_MAX = 448.0
#: weights that are not linear layers' (embeddings stay full precision, as in ComfyUI's files)
_KEEP = ("embed", "shared.", "position", "norm", "pos_embed", "patch_embed", "conv")


def quantised(name: str, tensor: torch.Tensor) -> bool:
    return (
        name.endswith(".weight")
        and tensor.ndim == 2
        and tensor.is_floating_point()
        and not any(word in name for word in _KEEP)
    )


def to_scaled_fp8(state: dict, *, marker_prefix: str = "", scales: bool = True) -> dict:
    """`state` in ComfyUI's scaled-fp8 layout; `scales=False` gives the same fp8 tensors with no
    scales (what a loader that ignored them would compute with)."""
    out = {}
    for name, tensor in state.items():
        if not quantised(name, tensor):
            out[name] = tensor
            continue
        scale = (tensor.float().abs().max() / E4M3_MAX).clamp(min=1e-12)
        out[name] = (tensor.float() / scale).to(torch.float8_e4m3fn)
        if scales:
            out[name[: -len("weight")] + "scale_weight"] = scale.reshape(()).float()
    if scales:
        out[marker_prefix + "scaled_fp8"] = torch.empty(0, dtype=torch.float8_e4m3fn)
    return out


def psnr(image: np.ndarray, reference: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of images in [0, 1] (NaNs count as 0)."""
    image = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0)
    error = float(np.mean((image - np.asarray(reference, dtype=np.float64)) ** 2))
    return float("inf") if error == 0 else 10 * np.log10(1.0 / error)
