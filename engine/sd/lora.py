"""LoRA files applied to a cached pipeline for one job, each with its own weight.

Files are read here (safetensors, or pickle only through `torch.load(weights_only=True)`) and
handed to diffusers as a state dict, which converts the A1111/kohya key layout and injects peft
adapters; `set_adapters` sets the per-LoRA weights. Afterwards every adapter is removed again, so
the cached pipeline is exactly the base model for the next job.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch

from engine.api import LoraRef
from engine.errors import InputError, ModelError

log = logging.getLogger(__name__)

_PICKLE_SUFFIXES = {".pt", ".pth", ".ckpt", ".bin"}


def read_lora_file(path_text: str) -> dict[str, torch.Tensor]:
    path = Path(path_text).expanduser()
    if not path.is_file():
        raise InputError(f"LoRA file not found: '{path}'. Check the path.")
    suffix = path.suffix.lower()
    try:
        if suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        elif suffix in _PICKLE_SUFFIXES:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
        else:
            raise ModelError(f"'{path.name}' is not a LoRA file (use .safetensors).")
    except ModelError:
        raise
    except Exception as exc:  # safetensors/pickle raise assorted errors on bad files
        raise ModelError(
            f"The LoRA file '{path.name}' cannot be read ({_short(exc)}); it is damaged or not a "
            "LoRA. Download it again or remove it."
        ) from exc
    if not isinstance(state, dict) or not state:
        raise ModelError(f"'{path.name}' holds no LoRA weights.")
    return state


@contextmanager
def applied_loras(pipe, loras: Sequence[LoraRef]) -> Iterator[list[str]]:
    """Apply `loras` to `pipe` for the duration of the block, then remove them all."""
    if not loras:
        yield []
        return
    names: list[str] = []
    try:
        for index, lora in enumerate(loras):
            name = f"easel_lora_{index}"
            _load_one(pipe, lora, name)
            names.append(name)
        pipe.set_adapters(names, adapter_weights=[float(lora.weight) for lora in loras])
        yield names
    finally:
        # also after a failed load: a half-injected adapter must not stay in the cached model
        pipe.unload_lora_weights()


def check_lora_bases(loras: Sequence[LoraRef], model_base: str) -> None:
    """Refuse, by name, a LoRA whose tensors say it was made for another base model (read from
    the file header, before anything is loaded); a LoRA whose base cannot be told is tried."""
    from engine.library.probe import BASE_NAMES, probe_path

    for lora in loras:
        path = Path(lora.path).expanduser()
        if not path.is_file():
            continue  # read_lora_file says so when the job reaches it
        probed = probe_path(path)
        if probed.kind == "lora" and probed.base and probed.base != model_base:
            made_for = BASE_NAMES.get(probed.base, probed.base)
            model = BASE_NAMES.get(model_base, model_base)
            raise InputError(
                f"The LoRA '{path.name}' is for {made_for}; the model is {model}. Pick a LoRA "
                f"made for {model} models, or a {made_for} model for this LoRA."
            )


def _load_one(pipe, lora: LoraRef, name: str) -> None:
    state = read_lora_file(lora.path)
    label = Path(lora.path).name
    try:
        pipe.load_lora_weights(state, adapter_name=name)
    except (ValueError, RuntimeError, KeyError, TypeError, AttributeError) as exc:
        raise ModelError(
            f"The LoRA '{label}' does not fit this model ({_short(exc)}). A LoRA works only with "
            "the base model it was trained for (SD 1.x, SD 2.x, SDXL, SD3, FLUX.1 or FLUX.2)."
        ) from exc
    applied = {adapter for names in pipe.get_list_adapters().values() for adapter in names}
    if name not in applied:
        raise ModelError(
            f"The LoRA '{label}' does not fit this model: none of its weights match the model's "
            "layers. A LoRA works only with the base model it was trained for."
        )


def _short(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:200]
