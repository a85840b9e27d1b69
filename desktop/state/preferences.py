"""App preferences kept between runs: window geometry and layout, last settings, runtime options.

Stored with QSettings in an INI file under the user data folder (`EASEL_DATA_DIR` in tests), so
nothing leaks into the desktop's global settings and tests stay isolated.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from PySide6.QtCore import QObject, QSettings, Signal

from engine.api import RuntimeOptions
from engine.errors import InputError
from engine.paths import user_data_dir

#: model folders for the understanding tools: role -> (settings label, what to pick there)
UNDERSTANDING_ROLES = {
    "language_model": (
        "Prompt expansion",
        "a causal language model folder (GPT-2 style, transformers format)",
    ),
    "caption_model": (
        "Describe image",
        "an image-to-text model folder (BLIP or a vision-encoder-decoder captioner)",
    ),
    "clip_model": ("Interrogate", "a CLIP model folder (transformers CLIPModel)"),
}


class Preferences(QObject):
    #: runtime options, model folders or output folder changed (apply without restart)
    changed = Signal()

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        path = user_data_dir() / "desktop.ini"
        #: what went wrong reading the settings, for the window to tell the user (or None)
        self.problem = set_aside_if_damaged(path)
        self.qsettings = QSettings(str(path), QSettings.Format.IniFormat)

    # -- plain values -----------------------------------------------------------------------
    def value(self, key: str, default=None):
        return self.qsettings.value(key, default)

    def set_value(self, key: str, value) -> None:
        self.qsettings.setValue(key, value)

    def sync(self) -> None:
        self.qsettings.sync()

    # -- typed groups -----------------------------------------------------------------------
    def runtime(self) -> RuntimeOptions:
        text = self.qsettings.value("engine/runtime", "")
        try:
            return RuntimeOptions.from_dict(json.loads(text)) if text else RuntimeOptions()
        except (InputError, json.JSONDecodeError, TypeError):
            return RuntimeOptions()

    def set_runtime(self, options: RuntimeOptions) -> None:
        self.qsettings.setValue("engine/runtime", options.to_json())

    def model_folders(self) -> list[str]:
        return self._list("library/folders")

    def output_folder(self) -> str:
        return str(self.qsettings.value("gallery/output_folder", "") or "")

    def default_model(self) -> str:
        return str(self.qsettings.value("library/default_model", "") or "")

    def apply(self, *, runtime: RuntimeOptions, folders: list[str], output_folder: str) -> None:
        """Save what the settings dialog chose and tell everyone at once."""
        self.set_runtime(runtime)
        self.qsettings.setValue("library/folders", json.dumps(list(folders)))
        self.qsettings.setValue("gallery/output_folder", output_folder)
        self.sync()
        self.changed.emit()

    def understanding_folder(self, role: str) -> str:
        """The model folder the user chose for `role` (see UNDERSTANDING_ROLES), or ""."""
        if role not in UNDERSTANDING_ROLES:
            raise KeyError(role)
        return str(self.qsettings.value(f"understanding/{role}", "") or "")

    def set_understanding_folder(self, role: str, folder: str) -> None:
        if role not in UNDERSTANDING_ROLES:
            raise KeyError(role)
        self.qsettings.setValue(f"understanding/{role}", folder.strip())

    def set_default_model(self, reference: str) -> None:
        self.qsettings.setValue("library/default_model", reference)
        self.sync()

    def _list(self, key: str) -> list[str]:
        try:
            data = json.loads(self.qsettings.value(key, "[]") or "[]")
        except (json.JSONDecodeError, TypeError):
            return []
        return [str(x) for x in data] if isinstance(data, list) else []


def set_aside_if_damaged(path: Path) -> str | None:
    """Keep a damaged settings file out of QSettings' way, without losing it.

    QSettings reads a damaged INI file without complaint and then rewrites it, dropping what it
    could not parse. So the file is checked first; if it is not a readable INI file it is
    renamed (kept beside the new one) and the app starts with defaults. Returns the message for
    the user, or None when the file is fine or absent.
    """
    if not path.is_file():
        return None
    problem = _ini_problem(path)
    if problem is None:
        return None
    kept = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
    try:
        path.rename(kept)
    except OSError as exc:
        return f"The settings file {path} is damaged ({problem}); setting it aside failed ({exc})."
    return (
        f"The settings file was damaged ({problem}), so Easel started with default settings. "
        f"The damaged file was kept as {kept.name}."
    )


def _ini_problem(path: Path) -> str | None:
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        return f"unreadable: {exc.strerror or exc}"
    except UnicodeDecodeError:
        return "not text"
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith((";", "#")):
            continue
        if line.startswith("["):
            if not line.endswith("]") or len(line) < 3:
                return f"line {number} is not a section header"
            continue
        if "=" not in line or not line.split("=", 1)[0].strip():
            return f"line {number} is not a setting"
    return None
