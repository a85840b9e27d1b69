"""The models the user can pick: the library's records, seen through one small adapter.

`engine.library.records` (the model library) is the source of truth when it is installed. Until
then, and for anything it does not know, the adapter lists the built-in models and the model
files in the user's folders with a reason why they are not identified, so the browser and the
picker always work.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Signal

from engine.capabilities import Capabilities, native_capabilities, sd_capabilities
from engine.errors import InputError
from engine.families.autoguide import GUIDE_FILE
from engine.library.builtin_choice import FALLBACK_MODEL, ranked_text_builtins
from engine.paths import atomic_write_text, models_dir, resource, user_data_dir

#: the built-in text-to-image models, the best measured first (their quality.json)
BUILTIN_MODELS = tuple(ranked_text_builtins()) or (FALLBACK_MODEL.removeprefix("builtin:"),)
MODEL_FILE_SUFFIXES = (".safetensors", ".ckpt", ".gguf")


#: settings a native model's config names for sampling (engine.families: DEFAULT_CONFIG)
MADE_FOR_FIELDS = ("guidance_scale", "steps", "sampler")


@dataclass(frozen=True)
class ModelInfo:
    """One row of the model browser."""

    reference: str  # what goes into GenerationRequest.model
    name: str
    kind: str = "unknown"  # checkpoint, lora, vae, upscaler, native, unknown
    base: str = ""
    variant: str = ""  # "dev,Q8_0", "3.5-medium", "inpaint", ... (the probe's)
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


def _display_name(info: ModelInfo | None, reference: str) -> str:
    """The model's name in messages: "emoji-ldm", not "emoji-ldm (built-in)" or a full path."""
    if info is not None and info.path:
        path = Path(info.path)
        return path.stem if path.is_file() else path.name
    return Path(reference.removeprefix("builtin:")).stem or "This model"


def _folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _record_to_info(record) -> ModelInfo:
    """One `engine.library.records.ModelRecord` as a browser row. Requests name it by path."""
    path = str(record.path)
    builtin = str(getattr(record, "source", "")) == "builtin"
    name = Path(path).name if builtin else str(record.name)
    return ModelInfo(
        reference=f"builtin:{name}" if builtin else path,
        name=f"{name} (built-in)" if builtin else name,
        kind=str(record.kind),
        base=str(record.base or ""),
        variant=str(record.variant or ""),
        size_bytes=int(record.size or 0),
        short_hash=str(record.short_hash or "") if record.sha256 else "",
        path=path,
        status=str(record.status or "ok"),
        reason=str(record.reason or ""),
        record_id=str(record.id),
    )


class ModelLibrary(QObject):
    """List, import and remove models. Emits `changed` after each change.

    Listing reads the records table (fast). `rescan_async` brings the records up to date with
    the disk on a plain thread (no Qt there) and refreshes when it is done.
    """

    changed = Signal()

    def __init__(self, folders: list[str] | None = None, parent: QObject | None = None):
        super().__init__(parent)
        self.folders = list(folders or [])
        self.models: list[ModelInfo] = []
        self._native_configs: dict[str, dict] = {}  # path -> config.json, per listing
        self._scan_thread: threading.Thread | None = None
        self._scan_error = ""
        self._poll = QTimer(self)
        self._poll.setInterval(100)
        self._poll.timeout.connect(self._scan_poll)
        self.refresh()

    def refresh(self) -> None:
        models = self._library_models()
        have = {m.reference for m in models}
        models = [m for m in builtin_models() if m.reference not in have] + models
        self.models = models
        self._native_configs.clear()
        self.changed.emit()

    def find(self, reference: str) -> ModelInfo | None:
        return next((m for m in self.models if m.reference == reference), None)

    def find_imported(self, model: str, model_hash: str = "") -> ModelInfo | None:
        """The library model another app's metadata names: by reference, by name (with or
        without the file extension), or by its A1111 short hash (which survives renames)."""
        if not model and not model_hash:
            return None
        stem = Path(model).stem.lower() if model else ""
        wanted_hash = model_hash.lower()[:10]
        for info in self.models:
            if model and (info.reference == model or info.name.lower() in (model.lower(), stem)):
                return info
        if wanted_hash:
            return next((m for m in self.models if m.short_hash.lower() == wanted_hash), None)
        return None

    def local_path(self, reference: str) -> str:
        """The file or folder a model reference (a library id or a path) points at."""
        info = self.find(reference)
        return info.path if info else reference

    def native_folder(self, reference: str) -> str | None:
        """A native (Easel-trained) model's folder; None for any other model."""
        info = self.find(reference)
        if info is not None and info.kind == "native" and info.path:
            return info.path
        if info is None and reference and (Path(reference) / "config.json").is_file():
            return reference  # a native folder named by path (browsed, or from metadata)
        return None

    def native_config(self, reference: str) -> dict:
        """A native (Easel-trained) model's config.json; {} for any other model."""
        folder = self.native_folder(reference)
        if folder is None:
            return {}
        # read once per listing: the panel asks on every model, mode and size change
        if folder not in self._native_configs:
            try:
                config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                config = {}
            self._native_configs[folder] = config if isinstance(config, dict) else {}
        return self._native_configs[folder]

    def capabilities(self, reference: str) -> Capabilities:
        """What the model can do (engine.capabilities): the one declaration the panel enables
        its controls from and the engine checks requests against."""
        info = self.find(reference)
        name = _display_name(info, reference)
        config = self.native_config(reference)
        if config:
            return native_capabilities(name, config)
        return sd_capabilities(name, info.base if info else "", info.variant if info else "")

    def made_for(self, reference: str) -> dict:
        """The sampling settings a native model was tuned at (its config's guidance, steps and
        sampler), to put in the panel when the model is chosen: the built-ins' cards measure
        at guidance 3, and the panel's Stable Diffusion default of 7 draws them worse."""
        config = self.native_config(reference)
        made_for = {name: config[name] for name in MADE_FOR_FIELDS if config.get(name) is not None}
        # always named: a model without known concepts (or without a weak copy to autoguide
        # with) clears the previous model's setting, so the panel hides the control
        folder = self.native_folder(reference)
        guided = folder is not None and (Path(folder) / GUIDE_FILE).is_file()
        autoguidance = float(config.get("autoguidance", 1.0)) if guided else None
        return {
            **made_for,
            "concept_strength": config.get("concept_strength"),
            "autoguidance": autoguidance,
        }

    def fixed_size(self, reference: str) -> int | None:
        """The side of the square pictures a native model always makes, or None for models that
        take any size (Stable Diffusion)."""
        return self.capabilities(reference).fixed_size

    def samplers_for(self, reference: str) -> tuple[str, ...] | None:
        """The samplers a native diffusion model runs (DDIM, DDPM); None: any SD sampler."""
        caps = self.capabilities(reference)
        return None if caps.family == "sd" else caps.samplers

    def needs_diffusers(self, reference: str) -> bool:
        """Whether running this model needs the Stable Diffusion stack (diffusers)."""
        if not reference or reference.startswith("builtin:"):
            return False
        info = self.find(reference)
        if info is not None and info.kind in ("native", "lora", "vae", "upscaler"):
            return False
        path = Path(info.path if info else reference)
        if path.is_dir():
            return (path / "model_index.json").is_file()
        return path.suffix.lower() in MODEL_FILE_SUFFIXES

    def of_kind(self, *kinds: str) -> list[ModelInfo]:
        return [m for m in self.models if m.kind in kinds]

    # -- the user's model folders (the library's own list when it is installed) -----------------
    def current_folders(self) -> list[str]:
        records = _records_module()
        if records is None:
            return list(self.folders)
        return [str(p) for p in records.ModelLibrary().folders()]

    def set_folders(self, folders: list[str]) -> list[str]:
        """Make the library scan exactly these folders, then rescan. Returns problems found."""
        problems: list[str] = []
        self.folders = list(folders)
        records = _records_module()
        if records is not None:
            library = records.ModelLibrary()
            wanted = {str(Path(f).expanduser().resolve()) for f in folders}
            for folder in library.folders():
                if str(folder) not in wanted:
                    library.remove_folder(folder)
            for folder in folders:
                try:
                    library.add_folder(folder)
                except InputError as exc:
                    problems.append(str(exc))
        self.rescan_async()
        return problems

    # -- background rescan ----------------------------------------------------------------------
    def rescan_async(self) -> bool:
        records = _records_module()
        if records is None or self.scanning:
            return False
        self._scan_thread = threading.Thread(target=self._scan, name="easel-model-scan")
        self._scan_thread.start()
        self._poll.start()
        return True

    @property
    def scanning(self) -> bool:
        return self._scan_thread is not None and self._scan_thread.is_alive()

    def _scan(self) -> None:
        try:
            from engine.library.records import ModelLibrary as Records
            from engine.library.scan import scan_library

            scan_library(Records())
        except Exception as exc:  # never let a scan take the app down; show why
            self._scan_error = f"The model scan failed: {exc}"

    def _scan_poll(self) -> None:
        if self.scanning:
            return
        self._poll.stop()
        self._scan_thread = None
        self.refresh()

    def shutdown(self, timeout: float = 30.0) -> None:
        if self._scan_thread is not None:
            self._scan_thread.join(timeout)
        self._poll.stop()

    # -- the library, or the fallback list -----------------------------------------------------
    def _library_models(self) -> list[ModelInfo]:
        records = _records_module()
        if records is not None:
            return [_record_to_info(r) for r in records.ModelLibrary().list_models()]
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
        """Add one model file or diffusers folder to the library (identified from its content)."""
        source = Path(path)
        if not source.exists():
            raise InputError(f"'{source}' does not exist.")
        if source.is_dir() and not (source / "model_index.json").is_file():
            raise InputError(f"'{source.name}' is a folder without a diffusers model_index.json.")
        if source.is_file() and source.suffix.lower() not in MODEL_FILE_SUFFIXES:
            raise InputError(f"'{source.name}' is not a model file (use .safetensors).")
        if _records_module() is not None:
            _import_record(source)
        else:
            _write_imported([*_read_imported(), str(source)])
        self.refresh()

    def remove(self, model: ModelInfo) -> None:
        """Forget a model. The user's file stays where it is."""
        if model.reference.startswith("builtin:"):
            raise InputError("Built-in models cannot be removed.")
        records = _records_module()
        if records is not None and model.record_id:
            records.ModelLibrary().delete(int(model.record_id))
        else:
            _write_imported([p for p in _read_imported() if p != model.path])
        self.refresh()


def _import_record(source: Path) -> None:
    """Probe one file or folder and save its record, as the library's scan would."""
    from engine.library.probe import probe_path
    from engine.library.records import ModelLibrary as Records

    records = Records()
    result = probe_path(source)
    size = (
        source.stat().st_size
        if source.is_file()
        else sum(p.stat().st_size for p in source.rglob("*") if p.is_file())
    )
    values = {
        "name": source.stem if source.is_file() else source.name,
        "kind": result.kind,
        "base": result.base,
        "variant": result.variant,
        "layout": result.layout,
        "config": result.config if isinstance(result.config, str) else "",
        "status": result.status,
        "reason": result.reason,
        "size": size,
        "mtime_ns": source.stat().st_mtime_ns,
        "source": "import",
        "path": str(source),
    }
    existing = records.by_path(source)
    records.save(values, model_id=existing.id if existing else None)


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
