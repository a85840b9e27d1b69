"""Turn what a request names as its model into a concrete, identified model on disk.

A request's `model` may be empty (the default model: the built-in that measures best,
engine.library.builtin_choice), `builtin:NAME` (shipped in
`resources/models/`), a path to a file or folder, or a library record id. The answer says which
family runs it: `sd` (diffusers) or one of Easel's native families.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import ModelError
from engine.library.builtin_choice import default_model
from engine.paths import resource


@dataclass(frozen=True)
class ResolvedModel:
    path: Path
    family: str  # "sd" or a native family name ("dcgan", "vae", "ldm", ...)
    #: "diffusers" (folder), "single_file" (checkpoint) or "native" (Easel folder)
    layout: str
    base: str = ""  # "sd1", "sd2", "sdxl", ... for SD models
    variant: str = ""  # "inpaint", "v_prediction", ...
    config: dict = field(default_factory=dict)  # native model's config.json

    @property
    def cache_key(self) -> str:
        return f"{self.family}:{self.layout}:{self.path}"


def resolve_model(reference: str) -> ResolvedModel:
    reference = (reference or "").strip() or default_model()
    if reference.startswith("builtin:"):
        name = reference.split(":", 1)[1]
        path = resource("models", name)
        if not path.is_dir():
            raise ModelError(
                f"The built-in model '{name}' is missing from this installation "
                f"({path}). Reinstall Easel or pick another model."
            )
        return _resolve_path(path)
    path = Path(reference).expanduser()
    if path.exists():
        return _resolve_path(path)
    from_library = _resolve_library_id(reference)
    if from_library is not None:
        return from_library
    builtin = _builtin_by_name(reference)
    if builtin is not None:
        return _resolve_path(builtin)
    raise ModelError(
        f"Model not found: '{reference}'. Check the path, or add the model in the model browser."
    )


def model_path(reference: str) -> Path:
    """The file or folder a model reference names (a path, `builtin:NAME`, a built-in's or a
    library record's name, id or hash), without identifying what it is."""
    reference = (reference or "").strip() or default_model()
    if reference.startswith("builtin:"):
        return resource("models", reference.split(":", 1)[1])
    path = Path(reference).expanduser()
    if path.exists():
        return path
    try:
        from engine.library.records import find_record_path
    except ImportError:
        find_record_path = None
    found = find_record_path(reference) if find_record_path else None
    if found:
        return Path(found)
    builtin = _builtin_by_name(reference)
    if builtin is not None:
        return builtin
    raise ModelError(
        f"Model not found: '{reference}'. Give a path, or a name or hash that "
        "`easel models list` shows."
    )


def _builtin_by_name(reference: str) -> Path | None:
    """A built-in named the way the app lists it (`emoji-ldm`), also in a fresh data folder
    where the library has no records yet."""
    if not reference or any(ch in reference for ch in "/\\:") or reference.startswith("."):
        return None
    path = resource("models", reference)
    return path if path.is_dir() else None


def _resolve_library_id(reference: str) -> ResolvedModel | None:
    """Look a name or record id up in the model library (filled in by engine.library.records)."""
    try:
        from engine.library.records import find_record_path
    except ImportError:
        return None
    path = find_record_path(reference)
    return _resolve_path(Path(path)) if path else None


def _resolve_path(path: Path) -> ResolvedModel:
    if path.is_dir():
        if (path / "model_index.json").is_file():
            base, variant = _folder_base(path)
            return ResolvedModel(
                path=path, family="sd", layout="diffusers", base=base, variant=variant
            )
        config_file = path / "config.json"
        if config_file.is_file():
            config = _read_json(config_file)
            family = config.get("family")
            if family:
                return ResolvedModel(path=path, family=family, layout="native", config=config)
        raise ModelError(
            f"'{path}' is not a model folder: it has neither a diffusers 'model_index.json' nor "
            "an Easel 'config.json'. Pick the folder that contains one of them."
        )
    if path.suffix.lower() in {".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf"}:
        return _resolve_single_file(path)
    raise ModelError(
        f"'{path.name}' is not a model file Easel can load "
        "(use .safetensors, or a diffusers folder)."
    )


def _folder_base(path: Path) -> tuple[str, str]:
    """Base and variant of a diffusers folder when the probe knows them (else empty)."""
    from engine.library.probe_folder import probe_folder

    result = probe_folder(path)
    return (result.base, result.variant) if result.ok else ("", "")


def _resolve_single_file(path: Path) -> ResolvedModel:
    """A checkpoint file, identified from its content; other kinds are refused with the reason
    (a LoRA or VAE picked as the model, a damaged file, a pickle that would run code)."""
    from engine.library.probe import probe_path

    result = probe_path(path)
    if result.status in {"broken", "unsafe"}:
        detail = result.reason if result.status == "unsafe" else f"it is damaged: {result.reason}"
        raise ModelError(f"'{path.name}' cannot be used: {detail}")
    if result.kind != "checkpoint":
        what = "a LoRA: add it under LoRAs" if result.kind == "lora" else f"a {result.kind}"
        if result.kind == "unknown":
            what = f"not a model Easel recognises ({result.reason})"
        raise ModelError(f"'{path.name}' is {what}, not a full model. Pick a checkpoint.")
    return ResolvedModel(
        path=path, family="sd", layout="single_file", base=result.base, variant=result.variant
    )


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(
            f"'{path}' is not valid JSON ({exc}); the model folder is broken."
        ) from exc
    if not isinstance(data, dict):
        raise ModelError(f"'{path}' should hold a JSON object; the model folder is broken.")
    return data
