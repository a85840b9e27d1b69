"""SHA-256 of model files, streamed, and cached in SQLite by (path, size, mtime).

Hashing a 6 GB checkpoint takes tens of seconds, so a hash is computed once and reused until the
file's size or modification time changes. The A1111 "short hash" shown in PNG metadata is the
first 10 hex digits of the full SHA-256 (A1111's `sha256` model hash, not its legacy hash).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from engine.errors import JobCancelled, ModelError

CHUNK_BYTES = 8 * 1024 * 1024
SHORT_HASH_DIGITS = 10

_SCHEMA = """
CREATE TABLE IF NOT EXISTS file_hashes (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    sha256 TEXT NOT NULL
)
"""


def short_hash(sha256: str) -> str:
    """A1111's short model hash: the first 10 hex digits of the SHA-256."""
    return sha256[:SHORT_HASH_DIGITS] if sha256 else ""


def sha256_file(
    path: str | os.PathLike,
    *,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> str:
    """Stream `path` through SHA-256 in 8 MB chunks (constant memory for any file size)."""
    path = Path(path)
    digest = hashlib.sha256()
    try:
        total = path.stat().st_size
        done = 0
        with open(path, "rb") as handle:
            while chunk := handle.read(CHUNK_BYTES):
                digest.update(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
                if cancel and cancel():
                    raise JobCancelled()
    except OSError as exc:
        raise ModelError(f"Could not read '{path}' to hash it ({exc.strerror or exc}).") from exc
    return digest.hexdigest()


def identity_path(path: str | os.PathLike) -> Path:
    """What a model's hash is taken over: a native Easel folder's weights file (the hash its
    pictures' metadata carry), else the file or diffusers folder itself."""
    path = Path(path)
    weights = path / "model.safetensors"
    if path.is_dir() and (path / "config.json").is_file() and weights.is_file():
        return weights
    return path


_SHORT_HASHES: dict[tuple[str, int, int], str] = {}


def cached_short_hash(path: str | os.PathLike) -> str:
    """A1111's short hash of one weights file, hashed once per (path, size, mtime) a session."""
    key = _identity(path)
    if key not in _SHORT_HASHES:
        _SHORT_HASHES[key] = short_hash(sha256_file(path))
    return _SHORT_HASHES[key]


def folder_hash(path: str | os.PathLike, **kwargs) -> str:
    """SHA-256 over a folder's weight files in path order (a diffusers folder's identity)."""
    root = Path(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        if file.suffix.lower() in {".safetensors", ".bin", ".json", ".txt"}:
            digest.update(file.relative_to(root).as_posix().encode())
            digest.update(bytes.fromhex(sha256_file(file, **kwargs)))
    return digest.hexdigest()


class HashCache:
    """File hashes keyed by (path, size, mtime) in the library database."""

    def __init__(self, db_path: str | os.PathLike | None = None, *, session=None):
        """`session`: a context manager factory yielding a connection to use instead of one
        per call (the scan passes its batch so hundreds of hashes cost one commit)."""
        if db_path is None:
            from engine.paths import database_path

            db_path = database_path()
        self.db_path = Path(db_path)
        self._lock = threading.RLock()
        self._session = session or self._own_session
        with self._session() as db:
            db.execute(_SCHEMA)

    @contextmanager
    def _own_session(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.db_path, timeout=30)
        try:
            yield db
            db.commit()
        finally:
            db.close()

    def cached(self, path: str | os.PathLike) -> str | None:
        """The stored hash if the file is unchanged since it was hashed, else None."""
        key, size, mtime = _identity(path)
        with self._lock, self._session() as db:
            row = db.execute(
                "SELECT sha256 FROM file_hashes WHERE path=? AND size=? AND mtime_ns=?",
                (key, size, mtime),
            ).fetchone()
        return row[0] if row else None

    def sha256(self, path: str | os.PathLike, **kwargs) -> str:
        """Hash of `path`, computed only if the file changed since the last time."""
        found = self.cached(path)
        if found:
            return found
        key, size, mtime = _identity(path)
        value = folder_hash(path, **kwargs) if Path(path).is_dir() else sha256_file(path, **kwargs)
        with self._lock, self._session() as db:
            db.execute(
                "INSERT OR REPLACE INTO file_hashes (path, size, mtime_ns, sha256) "
                "VALUES (?, ?, ?, ?)",
                (key, size, mtime, value),
            )
        return value


def _identity(path: str | os.PathLike) -> tuple[str, int, int]:
    resolved = Path(path).resolve()
    try:
        stat = resolved.stat()
    except OSError as exc:
        raise ModelError(f"'{path}' does not exist any more.") from exc
    return str(resolved), stat.st_size, stat.st_mtime_ns
