"""Read a safetensors checkpoint tensor by tensor, straight into the compute dtype.

diffusers' single-file loader maps the whole file (its pages count in the process's RSS while
any tensor of it lives) and then copies every weight into the compute dtype: an fp16 file
loaded as bf16 briefly holds both, about 2.1 GB each for SD 1.5. Reading each tensor with plain
file reads and converting it at once keeps one copy plus one tensor; the models then take these
tensors as they are (`.to(dtype)` of a tensor already in that dtype is no copy).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
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
}
_FLOATS = {torch.float64, torch.float32, torch.float16, torch.bfloat16}


def read_checkpoint(path: Path, dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    """Every tensor of safetensors file `path`; floating ones in `dtype` (when given)."""
    from engine.library.header import read_header

    header = read_header(path)
    state: dict[str, torch.Tensor] = {}
    with open(path, "rb") as handle:
        for name, info in sorted(header.tensors.items(), key=lambda item: item[1].start):
            stored = _DTYPES.get(info.dtype)
            if stored is None:
                raise ValueError(f"tensor '{name}' has an unsupported dtype {info.dtype}")
            handle.seek(info.start)
            raw = bytearray(info.end - info.start)
            if handle.readinto(raw) != len(raw):
                raise ValueError("the file is truncated inside a tensor")
            tensor = torch.frombuffer(raw, dtype=stored) if raw else torch.empty(0, dtype=stored)
            tensor = tensor.reshape(info.shape)
            if dtype is not None and stored in _FLOATS and stored != dtype:
                tensor = tensor.to(dtype)  # the file's bytes are dropped with `raw`
            state[name] = tensor
    return state


@contextlib.contextmanager
def streamed_single_file(dtype: torch.dtype | None) -> Iterator[None]:
    """Inside: diffusers' pipeline `from_single_file` reads safetensors files this way."""
    from diffusers.loaders import single_file

    original = single_file.load_single_file_checkpoint

    def load(path, *args, **kwargs):
        if isinstance(path, (str, Path)) and Path(path).is_file() and _is_safetensors(Path(path)):
            return read_checkpoint(Path(path), dtype)
        return original(path, *args, **kwargs)

    single_file.load_single_file_checkpoint = load
    try:
        yield
    finally:
        single_file.load_single_file_checkpoint = original


def _is_safetensors(path: Path) -> bool:
    from engine.library.header import BrokenFile, read_header

    if path.suffix.lower() in {".ckpt", ".pt", ".pth", ".bin"}:
        return False
    try:
        read_header(path)
    except BrokenFile:
        return False
    return True
