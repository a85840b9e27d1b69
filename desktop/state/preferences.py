"""App preferences kept between runs: window geometry and layout, last settings, runtime options.

Stored with QSettings in an INI file under the user data folder (`EASEL_DATA_DIR` in tests), so
nothing leaks into the desktop's global settings and tests stay isolated.
"""

from __future__ import annotations

import json

from PySide6.QtCore import QObject, QSettings, Signal

from engine.api import RuntimeOptions
from engine.errors import InputError
from engine.paths import user_data_dir


class Preferences(QObject):
    #: runtime options, model folders or output folder changed (apply without restart)
    changed = Signal()

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        path = user_data_dir() / "desktop.ini"
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

    def set_default_model(self, reference: str) -> None:
        self.qsettings.setValue("library/default_model", reference)
        self.sync()

    def _list(self, key: str) -> list[str]:
        try:
            data = json.loads(self.qsettings.value(key, "[]") or "[]")
        except (json.JSONDecodeError, TypeError):
            return []
        return [str(x) for x in data] if isinstance(data, list) else []
