"""The models the user can pick: the library's records, seen through one small adapter.

`engine.library.records` (the model library) is the source of truth when it is installed. Until
then, and for anything it does not know, the adapter lists the built-in models and the model
files in the user's folders with a reason why they are not identified, so the browser and the
picker always work.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from engine.errors import InputError
from engine.paths import atomic_write_text, models_dir, resource, user_data_dir

BUILTIN_MODELS = ("emoji-ldm",)
MODEL_FILE_SUFFIXES = (".safetensors", ".ckpt")


@dataclass(frozen=True)
class ModelInfo:
    """One row of the model browser."""

    reference: str  # what goes into GenerationRequest.model
    name: str
    kind: str = "unknown"  # checkpoint, lora, vae, upscaler, native, unknown
    base: str = ""
    size_bytes: int = 0
    short_hash: str = ""
    path: str = ""
    status: str = "ok"  # ok, unknown, broken, missing
    reason: str = ""
    record_id: str = ""

    @property
    def usable(self) -> bool:
        return self.status == "ok" and self.kind in ("checkpoint", "native", "unknown")


def builtin_models() -> list[ModelInfo]:
    found = []
    for name in BUILTIN_MODELS:
        path = resource("models", name)
        present = (path / "config.json").is_file() or (path / "model_index.json").is_file()
        found.append(
            ModelInfo(
                reference=f"builtin:{name}",
                name=f"{name} (built-in)",
                kind="native",
                base="easel",
                size_bytes=_folder_size(path) if present else 0,
                path=str(path),
                status="ok" if present else "missing",
                reason="" if present else "not installed yet: resources/models/" + name,
            )
        )
    return found


def _folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _record_to_info(record) -> ModelInfo:
    """Read a library record by attribute name, tolerating fields it does not have."""

    def field(*names, default=""):
        for name in names:
            value = getattr(record, name, None)
            if value is None and isinstance(record, dict):
                value = record.get(name)
            if value not in (None, ""):
                return value
        return default

    path = str(field("path"))
    sha = str(field("short_hash", "sha256", "hash"))
    status = str(field("status", default="ok"))
    reason = str(field("reason", "error", default=""))
    kind = str(field("kind", default="unknown"))
    if reason and status == "ok":
        status = "broken" if kind != "unknown" else "unknown"
    return ModelInfo(
        reference=str(field("id", "path")),
        name=str(field("name", default=Path(path).name)),
        kind=kind,
        base=str(field("base", default="")),
        size_bytes=int(field("size", "size_bytes", default=0) or 0),
        short_hash=sha[:10],
        path=path,
        status=status,
        reason=reason,
        record_id=str(field("id", default="")),
    )


class ModelLibrary(QObject):
    """List, import and remove models. Emits `changed` after each change."""

    changed = Signal()

    def __init__(self, folders: list[str] | None = None, parent: QObject | None = None):
        super().__init__(parent)
        self.folders = list(folders or [])
        self.models: list[ModelInfo] = []
        self.refresh()

    def refresh(self) -> None:
        models = builtin_models() + self._library_models()
        seen, unique = set(), []
        for model in models:
            if model.reference not in seen:
                seen.add(model.reference)
                unique.append(model)
        self.models = unique
        self.changed.emit()

    def find(self, reference: str) -> ModelInfo | None:
        return next((m for m in self.models if m.reference == reference), None)

    def of_kind(self, *kinds: str) -> list[ModelInfo]:
        return [m for m in self.models if m.kind in kinds]

    # -- the library, or the fallback list -----------------------------------------------------
    def _library_models(self) -> list[ModelInfo]:
        records = _records_module()
        if records is not None and hasattr(records, "list_records"):
            return [_record_to_info(r) for r in records.list_records()]
        return self._fallback_models()

    def _fallback_models(self) -> list[ModelInfo]:
        paths = [Path(p) for p in _read_imported()]
        for folder in [models_dir(), *map(Path, self.folders)]:
            if folder.is_dir():
                paths.extend(p for p in sorted(folder.iterdir()) if _looks_like_model(p))
        infos = []
        for path in dict.fromkeys(paths):
            exists = path.exists()
            infos.append(
                ModelInfo(
                    reference=str(path),
                    name=path.name,
                    kind="checkpoint" if exists else "unknown",
                    size_bytes=path.stat().st_size if exists and path.is_file() else 0,
                    path=str(path),
                    status="ok" if exists else "missing",
                    reason="" if exists else "the file has been moved or deleted",
                )
            )
        return infos

    def import_file(self, path: str) -> None:
        source = Path(path)
        if source.is_dir() and not (source / "model_index.json").is_file():
            raise InputError(f"'{source.name}' is a folder without a diffusers model_index.json.")
        if source.is_file() and source.suffix.lower() not in MODEL_FILE_SUFFIXES:
            raise InputError(f"'{source.name}' is not a model file (use .safetensors).")
        if not source.exists():
            raise InputError(f"'{source}' does not exist.")
        records = _records_module()
        if records is not None and hasattr(records, "import_model"):
            records.import_model(str(source))
        else:
            _write_imported([*_read_imported(), str(source)])
        self.refresh()

    def remove(self, model: ModelInfo) -> None:
        """Forget a model. The user's file stays where it is."""
        if model.reference.startswith("builtin:"):
            raise InputError("Built-in models cannot be removed.")
        records = _records_module()
        if records is not None and hasattr(records, "remove_record") and model.record_id:
            records.remove_record(model.record_id)
        else:
            _write_imported([p for p in _read_imported() if p != model.path])
        self.refresh()


def _records_module():
    try:
        from engine.library import records
    except ImportError:
        return None
    return records


def _looks_like_model(path: Path) -> bool:
    if path.is_file():
        return path.suffix.lower() in MODEL_FILE_SUFFIXES
    return (path / "model_index.json").is_file()


def _imported_path() -> Path:
    return user_data_dir() / "imported-models.json"


def _read_imported() -> list[str]:
    try:
        data = json.loads(_imported_path().read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return []
    return [str(x) for x in data] if isinstance(data, list) else []


def _write_imported(paths: list[str]) -> None:
    atomic_write_text(_imported_path(), json.dumps(list(dict.fromkeys(paths))))
