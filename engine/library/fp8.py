"""Dequantise ComfyUI's "scaled fp8" safetensors files as they are read.

ComfyUI ships many models (`t5xxl_fp8_e4m3fn_scaled`, `sd3.5_large_fp8_scaled`, FLUX and CLIP
`*_fp8_scaled`) with each weight matrix stored as float8 and a float32 `<layer>.scale_weight`
beside it: the real weight is `fp8.to(float32) * scale_weight` (comfy/ops.py `scaled_fp8_ops`
multiplies every weight of a layer that has one). Such files also hold a marker tensor
`[<prefix>.]scaled_fp8` and sometimes `<layer>.scale_input` (activation scales for fp8 matmuls,
unused when the weight is upcast). Other tools name the scale `<layer>.weight_scale` and may
store one per output row. Every single-file reader in Easel passes its tensors through
`Fp8Scales.apply`, so the rest of the code sees plain weights in the compute dtype.

The scales are tiny and read first (by name); weights then stream one at a time, so dequantising
costs no second copy of the model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

from engine.errors import ModelError

if TYPE_CHECKING:  # torch is imported where tensors are handled: the probe uses the names only
    import torch

#: suffix of a weight's scale -> suffix of the weight it multiplies
SCALE_SUFFIXES = {".scale_weight": ".weight", ".weight_scale": ".weight"}
#: tensors only fp8 matmuls use (activation scales) or that only mark the format
DROPPED_SUFFIXES = (".scale_input", ".input_scale")
MARKER = "scaled_fp8"
#: elements dequantised at once (16 MiB of float32); weights of up to SMALL elements in one go
CHUNK = 1 << 22
SMALL = 1 << 16


def is_marker(name: str) -> bool:
    return name == MARKER or name.endswith("." + MARKER)


def scale_target(name: str) -> str | None:
    """The weight a scale tensor multiplies ('a.scale_weight' -> 'a.weight'), else None."""
    for suffix, weight in SCALE_SUFFIXES.items():
        if name.endswith(suffix):
            return name[: -len(suffix)] + weight
    return None


def is_scaled(keys: Iterable[str]) -> bool:
    """Whether a file's tensor names are those of a scaled-fp8 file."""
    return any(is_marker(k) or scale_target(k) for k in keys)


def is_dropped(name: str) -> bool:
    """A scale, activation scale or marker: not a tensor of the model."""
    return is_marker(name) or name.endswith(DROPPED_SUFFIXES) or scale_target(name) is not None


class Fp8Scales:
    """The scales of one file, keyed by the weight each multiplies."""

    def __init__(self, scales: Mapping[str, torch.Tensor], shown: str = "the file"):
        self.shown = shown
        self.by_weight = {scale_target(k): (k, v) for k, v in scales.items()}
        self._buffer = None  # float32 working memory for big weights (apply)

    @classmethod
    def read(
        cls,
        shapes: Mapping[str, tuple],
        get: Callable[[str], torch.Tensor],
        shown: str = "the file",
    ) -> Fp8Scales:
        """Read the scale tensors of a file ({name: shape}, a getter by name) and check each
        belongs to a weight of a fitting shape; ModelError naming the first that does not."""
        import torch

        # float32 copies: a tensor left in a file's mapping would keep the mapping alive
        scales = {k: get(k).to(torch.float32, copy=True) for k in shapes if scale_target(k)}
        out = cls(scales, shown)
        for weight, (name, scale) in out.by_weight.items():
            if weight not in shapes:
                raise ModelError(
                    f"{shown} holds the fp8 scale '{name}' but no weight '{weight}' for it: the "
                    "file is damaged or was converted wrongly. Download it again."
                )
            _check_shape(name, tuple(scale.shape), tuple(shapes[weight]), shown)
        return out

    def apply(self, name: str, tensor: torch.Tensor, dtype: torch.dtype | None):
        """The tensor as the model takes it: a scaled weight multiplied in float32 and cast to
        `dtype` (float32 when None), fp8 upcast, other floats cast; None for a tensor to drop
        (scales, activation scales, the marker)."""
        import torch

        if is_dropped(name):
            return None
        entry = self.by_weight.get(name)
        if entry is None:
            if dtype is not None and tensor.is_floating_point() and tensor.dtype != dtype:
                return tensor.to(dtype)
            return tensor
        scale = entry[1]
        if scale.numel() != 1:  # one per output row: broadcast over the other dimensions
            scale = scale.reshape(-1, *([1] * (tensor.dim() - 1)))
        dtype = dtype or torch.float32
        if tensor.dim() == 0 or tensor.numel() <= SMALL:
            return (tensor.to(torch.float32) * scale).to(dtype)
        # in row blocks through one float32 buffer kept for the whole file: the float32
        # product of a whole FLUX linear1 would be 264 MB more peak, and a float32 temporary
        # freed per weight raises glibc's mmap threshold and leaves heap holes between the
        # results (measured: +120 MiB peak for FLUX, +450 MiB for a 260 MiB T5)
        out = torch.empty(tensor.shape, dtype=dtype)
        width = max(1, tensor[0].numel())
        rows = max(1, CHUNK // width)
        if self._buffer is None or self._buffer.numel() < rows * width:
            self._buffer = torch.empty(max(CHUNK, rows * width), dtype=torch.float32)
        buffer = self._buffer[: rows * width].view(rows, *tensor.shape[1:])
        for start in range(0, tensor.shape[0], rows):
            block = buffer[: min(rows, tensor.shape[0] - start)]
            block.copy_(tensor[start : start + rows])  # fp8 -> float32, exact
            block.mul_(scale if scale.numel() == 1 else scale[start : start + rows])
            out[start : start + rows].copy_(block)  # rounded once, to the compute dtype
        return out


def _check_shape(name: str, scale: tuple, weight: tuple, shown: str) -> None:
    count = 1
    for size in scale:
        count *= size
    per_row = weight and count == weight[0] and scale in ((weight[0],), (weight[0], 1))
    if count == 1 or per_row:
        return
    raise ModelError(
        f"{shown} has an fp8 scale '{name}' of shape {scale} for a weight of shape {weight}: a "
        "scale is one number or one per output row. The file is damaged or of another format."
    )


def dequantise_state(
    state: Mapping[str, torch.Tensor], dtype: torch.dtype | None, shown: str = "the file"
) -> dict[str, torch.Tensor]:
    """A whole state dict with scaled-fp8 weights applied and their scale tensors dropped; a
    dict without scales is returned with its tensors unchanged (not even cast)."""
    if not is_scaled(state):
        return dict(state)
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    scales = Fp8Scales.read(shapes, state.__getitem__, shown)
    out = {}
    for name, tensor in state.items():
        value = scales.apply(name, tensor, dtype)
        if value is not None:
            out[name] = value
    return out
