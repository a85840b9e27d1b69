"""Checks for user-supplied transformers model folders (CLIP, captioners, language models).

A folder of the wrong kind must fail with a message that says what it holds and what was
expected, before any weights load: the kind is read from `config.json`'s `model_type`, which
transformers itself uses to pick the class.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import ModelError

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


def read_model_config(folder: str | Path, *, what: str) -> tuple[Path, dict]:
    """(folder, config dict) of a transformers model folder; ModelError if it is not one."""
    path = Path(folder).expanduser()
    if not path.exists():
        raise ModelError(f"The {what} model folder '{path}' does not exist.")
    if not path.is_dir():
        raise ModelError(
            f"'{path}' is a file; choose the {what} model's folder (with config.json) instead."
        )
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ModelError(
            f"'{path}' is not a transformers model folder: it has no config.json. Choose the "
            f"folder of a {what} model."
        )
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"'{config_file}' is not valid JSON ({exc}).") from exc
    if not isinstance(config, dict):
        raise ModelError(f"'{config_file}' should hold a JSON object.")
    if not any((path / name).is_file() for name in WEIGHT_FILES):
        raise ModelError(
            f"'{path}' has a config.json but no weights ({' or '.join(WEIGHT_FILES[::2])})."
        )
    return path, config


def require_model_type(
    config: dict, allowed: Iterable[str], *, folder: Path, what: str, examples: str
) -> str:
    """The folder's `model_type`, or ModelError naming what it holds and what would fit."""
    model_type = str(config.get("model_type", "")).strip()
    allowed = set(allowed)
    if model_type in allowed:
        return model_type
    holds = f"a '{model_type}' model" if model_type else "a model of unknown type"
    raise ModelError(
        f"'{folder}' holds {holds}, not a {what} model. Choose a {what} model folder ({examples})."
    )


def load_pretrained(loader: Callable[..., Any], folder: Path, *, what: str, **kwargs) -> Any:
    """`loader(folder)` from local files only, turning library errors into one ModelError."""
    try:
        return loader(str(folder), local_files_only=True, **kwargs)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise ModelError(f"The {what} model in '{folder}' could not be loaded: {exc}") from exc


@dataclass
class ModelBundle:
    """A loaded model with its tokenizer/processors, as one model-cache entry.

    `components` lets the cache measure the model's size (as it does for diffusers pipelines).
    """

    model: Any
    processors: dict = field(default_factory=dict)
    kind: str = ""

    @property
    def components(self) -> dict:
        return {"model": self.model}
