"""Read model weights safely: safetensors, or pickles through `torch.load(weights_only=True)`.

A `.ckpt`/`.pt`/`.pth`/`.bin` file is a Python pickle, and unpickling can run any code the file's
author wrote. `weights_only=True` only rebuilds tensors and plain containers; a file that needs
anything more is refused with a message saying why and how to convert it, and nothing in it runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.errors import ModelError

PICKLE_SUFFIXES = {".ckpt", ".pt", ".pth", ".bin"}
SAFETENSORS_SUFFIXES = {".safetensors", ".sft"}

CONVERT_HINT = (
    "Only convert a file you trust, on a machine you trust: in Python, "
    "`sd = torch.load(FILE, weights_only=False)` then "
    "`safetensors.torch.save_file(sd.get('state_dict', sd), 'model.safetensors')`, "
    "and add the .safetensors file instead."
)


def load_pickle(path: str | Path, *, map_location: Any = "cpu") -> Any:
    """`torch.load` with `weights_only=True`; anything unsafe or unreadable -> ModelError."""
    import pickle

    import torch

    path = Path(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ModelError(
            f"Refused to open '{path.name}': it is a pickle that needs to run code to load "
            f"({_first_line(exc)}), which a model file should never need. {CONVERT_HINT}"
        ) from exc
    except (RuntimeError, EOFError, ValueError, OSError) as exc:
        raise ModelError(
            f"'{path.name}' could not be read as a PyTorch checkpoint ({_first_line(exc)}). "
            "The file may be truncated or not a model."
        ) from exc


def unwrap_state_dict(data: Any, *, name: str = "the file") -> dict[str, Any]:
    """The tensor dict inside a checkpoint (`state_dict`, `params_ema`, ... wrappers removed)."""
    import torch

    for wrapper in ("state_dict", "params_ema", "params", "model"):
        if isinstance(data, dict) and isinstance(data.get(wrapper), dict):
            inner = data[wrapper]
            if any(isinstance(v, torch.Tensor) for v in inner.values()):
                data = inner
                break
    if not isinstance(data, dict):
        raise ModelError(f"{name} does not hold a dictionary of weights.")
    if all(isinstance(data.get(part), dict) for part in ("image_proj", "ip_adapter")):
        # h94's IP-Adapter .bin files nest two dicts; flat keys as in their .safetensors twins
        data = {
            f"{part}.{k}": v for part in ("image_proj", "ip_adapter") for k, v in data[part].items()
        }
    tensors = {k: v for k, v in data.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ModelError(f"{name} holds no weights.")
    return tensors


def load_state_dict(path: str | Path, *, device: str = "cpu") -> dict[str, Any]:
    """All tensors of a weights file (safetensors or a weights-only pickle)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device=device)
        except (SafetensorError, OSError) as exc:
            raise ModelError(f"'{path.name}' is not a readable safetensors file ({exc}).") from exc
    if suffix in PICKLE_SUFFIXES:
        return unwrap_state_dict(load_pickle(path, map_location=device), name=f"'{path.name}'")
    raise ModelError(f"'{path.name}' is not a weights file (use .safetensors or .pth).")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
