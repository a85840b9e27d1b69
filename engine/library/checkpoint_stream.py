"""Read a safetensors checkpoint tensor by tensor, straight into the compute dtype.

diffusers' single-file loader maps the whole file (its pages count in the process's RSS while
any tensor of it lives) and then copies every weight into the compute dtype: an fp16 file
loaded as bf16 briefly holds both, about 2.1 GB each for SD 1.5. Reading each tensor with plain
file reads and converting it at once keeps one copy plus one tensor; the models then take these
tensors as they are (`.to(dtype)` of a tensor already in that dtype is no copy).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
}
_FLOATS = {
    torch.float64,
    torch.float32,
    torch.float16,
    torch.bfloat16,
    torch.float8_e4m3fn,
    torch.float8_e5m2,
}


def read_checkpoint(path: Path, dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    """Every tensor of safetensors file `path`; floating ones in `dtype` (when given). A scaled
    fp8 file (engine.library.fp8) has its scales applied and dropped as each weight is read."""
    return dict(iter_checkpoint(path, lambda name: dtype))


def iter_checkpoint(
    path: Path,
    dtype_for: Callable[[str], torch.dtype | None],
    *,
    prefix: str = "",
    strip: bool = False,
) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) for the tensors of `path` under `prefix` (named without it when `strip`),
    in file order, each read with plain file reads (no mapping keeps the file's pages) and
    floating ones cast to `dtype_for(name)`; scaled-fp8 weights times their scales, the scales
    left out."""
    from engine.library.fp8 import Fp8Scales, is_scaled
    from engine.library.header import read_header

    cut = len(prefix) if strip else 0
    tensors = {k[cut:]: v for k, v in read_header(path).tensors.items() if k.startswith(prefix)}
    with open(path, "rb") as handle:

        def read(name: str) -> torch.Tensor:
            return _read_tensor(handle, name, tensors[name])

        scales = None
        if is_scaled(tensors):  # the scales are tiny: read them first, then stream the weights
            shapes = {k: tuple(v.shape) for k, v in tensors.items()}
            scales = Fp8Scales.read(shapes, read, f"'{path.name}'")
        for name, _ in sorted(tensors.items(), key=lambda item: item[1].start):
            tensor, dtype = read(name), dtype_for(name)
            if scales is not None:
                tensor = scales.apply(name, tensor, dtype)
                if tensor is None:
                    continue  # a scale or the marker: already applied
            elif dtype is not None and tensor.dtype in _FLOATS and tensor.dtype != dtype:
                tensor = tensor.to(dtype)  # the file's bytes are dropped with the buffer
            yield name, tensor


def _read_tensor(handle, name: str, info) -> torch.Tensor:
    stored = _DTYPES.get(info.dtype)
    if stored is None:
        raise ValueError(f"tensor '{name}' has an unsupported dtype {info.dtype}")
    handle.seek(info.start)
    raw = bytearray(info.end - info.start)
    if handle.readinto(raw) != len(raw):
        raise ValueError("the file is truncated inside a tensor")
    tensor = torch.frombuffer(raw, dtype=stored) if raw else torch.empty(0, dtype=stored)
    return tensor.reshape(info.shape)


@contextlib.contextmanager
def streamed_single_file(dtype: torch.dtype | None) -> Iterator[None]:
    """Inside: diffusers' `from_single_file` (pipelines' and models') reads safetensors files
    this way, so scaled-fp8 files are dequantised too (diffusers does not apply the scales)."""
    from diffusers.loaders import single_file, single_file_model

    modules = (single_file, single_file_model)
    originals = [module.load_single_file_checkpoint for module in modules]

    def load(path, *args, **kwargs):
        if isinstance(path, (str, Path)) and Path(path).is_file() and _is_safetensors(Path(path)):
            return read_checkpoint(Path(path), dtype)
        return originals[0](path, *args, **kwargs)

    for module in modules:
        module.load_single_file_checkpoint = load
    try:
        yield
    finally:
        for module, original in zip(modules, originals, strict=True):
            module.load_single_file_checkpoint = original


def scaled_single_file(path: Path, dtype: torch.dtype | None):
    """streamed_single_file for a scaled-fp8 safetensors file, else nothing (diffusers' own
    reader, as before)."""
    from engine.library.fp8 import is_scaled
    from engine.library.header import BrokenFile, read_header

    try:
        scaled = is_scaled(read_header(path).names())
    except BrokenFile:
        scaled = False  # GGUF, pickles, damage: diffusers reports those
    return streamed_single_file(dtype) if scaled else contextlib.nullcontext()


def _is_safetensors(path: Path) -> bool:
    from engine.library.header import BrokenFile, read_header

    if path.suffix.lower() in {".ckpt", ".pt", ".pth", ".bin"}:
        return False
    try:
        read_header(path)
    except BrokenFile:
        return False
    return True
