"""Inception features of image sets kept on disk, so a reference set is read only once.

The usual workflow compares many generated batches against one reference folder; its features
(the slow part: about a second per image on two CPU cores) are stored under the user data
folder and reused while the set is unchanged. The key covers every file's path, size and
modification time plus the network file's size, so adding, removing or editing an image, or a
different network, computes fresh features. Files are written atomically; a damaged or
unreadable cache entry is ignored and rebuilt.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from engine.paths import atomic_write_bytes, user_data_dir

log = logging.getLogger(__name__)

#: the cache never grows past this many entries; the oldest go first
MAX_ENTRIES = 32


def cache_dir() -> Path:
    path = user_data_dir() / "cache" / "fid-features"
    path.mkdir(parents=True, exist_ok=True)
    return path


def set_key(paths: Sequence[Path], network_file: Path) -> str:
    digest = hashlib.sha256()
    digest.update(f"{network_file.name}:{network_file.stat().st_size}\n".encode())
    for path in paths:
        stat = Path(path).stat()
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:32]


def load(key: str, count: int) -> np.ndarray | None:
    path = cache_dir() / f"{key}.npy"
    try:
        features = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    if features.ndim != 2 or len(features) != count or not np.isfinite(features).all():
        log.warning("ignoring a damaged FID feature cache entry %s", path)
        return None
    path.touch()  # most recently used
    return features.astype(np.float64)


def store(key: str, features: np.ndarray) -> None:
    buffer = io.BytesIO()
    # float32 is what the network computes: storing float64 would only double the size
    np.save(buffer, features.astype(np.float32), allow_pickle=False)
    try:
        atomic_write_bytes(cache_dir() / f"{key}.npy", buffer.getvalue())
        _trim()
    except OSError as exc:  # a full disk must not fail the evaluation itself
        log.warning("could not cache FID features: %s", exc)


def _trim() -> None:
    entries = sorted(cache_dir().glob("*.npy"), key=lambda p: p.stat().st_mtime, reverse=True)
    for stale in entries[MAX_ENTRIES:]:
        stale.unlink(missing_ok=True)
