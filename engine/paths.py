"""Where things live: bundled resources (source checkout or frozen bundle) and per-user data.

One helper for resources so a PyInstaller bundle and a source checkout resolve the same way.
Per-user data lives in platformdirs' folders, never inside the app, so upgrades keep it.
`EASEL_DATA_DIR` overrides the data folder (tests point it at a temp folder).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

APP_NAME = "Easel"
APP_AUTHOR = "Easel"


def resources_dir() -> Path:
    """The `resources/` folder: next to the packages in a checkout, in `_MEIPASS` when frozen."""
    frozen_root = getattr(sys, "_MEIPASS", None)
    if frozen_root:
        return Path(frozen_root) / "resources"
    return Path(__file__).resolve().parent.parent / "resources"


def resource(*parts: str) -> Path:
    return resources_dir().joinpath(*parts)


def user_data_dir() -> Path:
    override = os.environ.get("EASEL_DATA_DIR")
    if override:
        path = Path(override)
    else:
        from platformdirs import user_data_dir as _user_data_dir

        path = Path(_user_data_dir(APP_NAME, APP_AUTHOR))
    path.mkdir(parents=True, exist_ok=True)
    return path


def models_dir() -> Path:
    path = user_data_dir() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def gallery_dir() -> Path:
    path = user_data_dir() / "gallery"
    path.mkdir(parents=True, exist_ok=True)
    return path


def database_path() -> Path:
    return user_data_dir() / "easel.sqlite3"


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write to a temp file beside `path`, fsync, then rename over it: never a half file."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return target


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))
