"""Where things live: bundled resources (source checkout or frozen bundle) and per-user data.

One helper for resources so a PyInstaller bundle and a source checkout resolve the same way.
Per-user data lives in platformdirs' folders, never inside the app, so upgrades keep it.
`EASEL_DATA_DIR` overrides the data folder (tests point it at a temp folder).
"""

from __future__ import annotations

import functools
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
    """The per-user data folder, created if needed.

    If it cannot be created or written (a read-only home, a path under a file), Easel still
    starts: it falls back to a folder in the temp dir and `data_dir_warning()` says what
    happened, so the app can tell the user. Nothing in the unwritable folder is touched.
    """
    return _usable_data_dir(os.environ.get("EASEL_DATA_DIR", ""))[0]


def data_dir_warning() -> str | None:
    """A message for the user if the data folder was unusable and a fallback is in use."""
    return _usable_data_dir(os.environ.get("EASEL_DATA_DIR", ""))[1]


@functools.lru_cache(maxsize=16)
def _usable_data_dir(override: str) -> tuple[Path, str | None]:
    if override:
        preferred = Path(override)
    else:
        from platformdirs import user_data_dir as _user_data_dir

        preferred = Path(_user_data_dir(APP_NAME, APP_AUTHOR))
    problem = _check_writable(preferred)
    if problem is None:
        return preferred, None
    fallback = Path(tempfile.gettempdir()) / f"{APP_NAME}-fallback-data"
    fallback.mkdir(parents=True, exist_ok=True)
    warning = (
        f"Easel cannot write to its data folder {preferred} ({problem}). This session keeps "
        f"its models, gallery and settings in {fallback} instead; fix the folder's permissions "
        "or set EASEL_DATA_DIR to a writable folder to keep them."
    )
    return fallback, warning


def _check_writable(path: Path) -> str | None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".easel-write-check-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    return None


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
        # mkstemp makes the file 0600; the user's pictures must open in other programs as any
        # file they save does: the mode a plain open() gives, or the replaced file's own mode
        os.chmod(tmp, _mode_for(target))
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


def _current_umask() -> int:
    """The process umask, read without changing it where the system allows (changing it, even
    for a moment, would race with other threads creating files)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _current_umask()  # read once at import, before any worker thread exists


def _mode_for(target: Path) -> int:
    try:
        return target.stat().st_mode & 0o777
    except OSError:
        return 0o666 & ~_UMASK


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))
