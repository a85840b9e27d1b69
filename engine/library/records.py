"""Model records in SQLite (`engine.paths.database_path()`): what the library knows and shows.

One row per model file or folder: name, kind, base, variant, path, size, hash, added/used times,
user notes, and a status ("ok", "unsupported", "broken", "unsafe", "unknown", "missing") with its
reason. Rows are written by the scan (engine.library.scan) and read by the model browser, the CLI
and `resolve_model` (`find_record_path`). The user's files are never touched from here.
"""

from __future__ import annotations

import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from engine.errors import InputError

_SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS models (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL,
        kind TEXT NOT NULL,
        base TEXT NOT NULL DEFAULT '',
        variant TEXT NOT NULL DEFAULT '',
        layout TEXT NOT NULL DEFAULT '',
        config TEXT NOT NULL DEFAULT '',
        path TEXT NOT NULL UNIQUE,
        source TEXT NOT NULL DEFAULT '',
        size INTEGER NOT NULL DEFAULT 0,
        mtime_ns INTEGER NOT NULL DEFAULT 0,
        fingerprint TEXT NOT NULL DEFAULT '',
        sha256 TEXT NOT NULL DEFAULT '',
        added REAL NOT NULL,
        last_used REAL,
        notes TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL DEFAULT 'ok',
        reason TEXT NOT NULL DEFAULT '',
        probe_version INTEGER NOT NULL DEFAULT 0
    )
    """,
    "CREATE INDEX IF NOT EXISTS models_name ON models(name)",
    "CREATE INDEX IF NOT EXISTS models_fingerprint ON models(fingerprint)",
    """
    CREATE TABLE IF NOT EXISTS model_folders (
        path TEXT PRIMARY KEY,
        added REAL NOT NULL
    )
    """,
)


@dataclass
class ModelRecord:
    id: int
    name: str
    kind: str
    base: str
    variant: str
    layout: str
    config: str
    path: str
    source: str
    size: int
    mtime_ns: int
    fingerprint: str
    sha256: str
    added: float
    last_used: float | None
    notes: str
    status: str
    reason: str
    probe_version: int

    @property
    def short_hash(self) -> str:
        from engine.library.hashing import short_hash

        return short_hash(self.sha256)

    def to_dict(self) -> dict:
        return asdict(self)


#: SQLite's largest INTEGER: row ids never exceed it
_MAX_ROW_ID = 2**63 - 1
_COLUMNS = [f.name for f in fields(ModelRecord)]
#: a hash reference: A1111's 10-digit short hash up to the full SHA-256
_HEX_PREFIX = re.compile(r"[0-9a-fA-F]{10,64}")


class ModelLibrary:
    """The records table plus the user's extra model folders. Safe to use from any thread."""

    def __init__(self, db_path: str | os.PathLike | None = None):
        if db_path is None:
            from engine.paths import database_path

            db_path = database_path()
        self.db_path = Path(db_path)
        self._lock = threading.RLock()
        self._batch: sqlite3.Connection | None = None
        with self.session() as db:
            for statement in _SCHEMA:
                db.execute(statement)

    def connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.db_path, timeout=30)
        db.row_factory = sqlite3.Row
        return db

    @contextmanager
    def session(self) -> Iterator[sqlite3.Connection]:
        """A connection that commits and closes at the end, or the open batch's connection."""
        with self._lock:
            if self._batch is not None:
                yield self._batch
                return
            db = self.connect()
            try:
                yield db
                db.commit()
            finally:
                db.close()

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Group many writes into one transaction (a scan writes hundreds of rows: one commit,
        one fsync, instead of one each)."""
        with self._lock:
            if self._batch is not None:
                yield
                return
            self._batch = self.connect()
            try:
                yield
                self._batch.commit()
            finally:
                self._batch.close()
                self._batch = None

    # ------------------------------------------------------------------ reading
    def list_models(self, *, kind: str | None = None, include_missing: bool = True):
        query = f"SELECT {', '.join(_COLUMNS)} FROM models"
        clauses, args = [], []
        if kind:
            clauses.append("kind = ?")
            args.append(kind)
        if not include_missing:
            clauses.append("status != 'missing'")
        if clauses:
            query += " WHERE " + " AND ".join(clauses)
        query += " ORDER BY kind, base, name COLLATE NOCASE"
        with self.session() as db:
            return [_record(row) for row in db.execute(query, args)]

    def get(self, model_id: int) -> ModelRecord | None:
        with self.session() as db:
            row = db.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM models WHERE id = ?", (model_id,)
            ).fetchone()
        return _record(row) if row else None

    def by_path(self, path: str | os.PathLike) -> ModelRecord | None:
        with self.session() as db:
            row = db.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM models WHERE path = ?", (_key(path),)
            ).fetchone()
        return _record(row) if row else None

    def find(self, reference: str) -> ModelRecord | None:
        """A record by id ("12", "id:12"), by name, or by hash: the A1111 short hash or any
        longer prefix of the SHA-256 (usable records first, newest first)."""
        reference = (reference or "").strip()
        if not reference:
            return None
        digits = reference[3:] if reference.lower().startswith("id:") else reference
        if digits.isdigit() and int(digits) <= _MAX_ROW_ID:  # a longer number is a name
            found = self.get(int(digits))
            if found:
                return found
        with self.session() as db:
            row = db.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM models WHERE name = ? COLLATE NOCASE "
                "ORDER BY status = 'ok' DESC, COALESCE(last_used, added) DESC LIMIT 1",
                (reference,),
            ).fetchone()
            if row is None and _HEX_PREFIX.fullmatch(reference):
                row = db.execute(
                    f"SELECT {', '.join(_COLUMNS)} FROM models WHERE sha256 LIKE ? "
                    "ORDER BY status = 'ok' DESC, COALESCE(last_used, added) DESC LIMIT 1",
                    (reference.lower() + "%",),
                ).fetchone()
        return _record(row) if row else None

    # ------------------------------------------------------------------ writing
    def save(self, values: dict, *, model_id: int | None = None) -> int:
        """Insert a record (no id) or update the given columns of record `model_id`."""
        values = {k: v for k, v in values.items() if k in _COLUMNS and k != "id"}
        if "path" in values:
            values["path"] = _key(values["path"])
        with self.session() as db:
            if model_id is None:
                values.setdefault("added", time.time())
                names = ", ".join(values)
                marks = ", ".join("?" for _ in values)
                cursor = db.execute(
                    f"INSERT INTO models ({names}) VALUES ({marks})", list(values.values())
                )
                return int(cursor.lastrowid)
            assignments = ", ".join(f"{k} = ?" for k in values)
            db.execute(
                f"UPDATE models SET {assignments} WHERE id = ?", [*values.values(), model_id]
            )
            return model_id

    def with_fingerprint(self, fingerprint: str) -> list[ModelRecord]:
        with self.session() as db:
            rows = db.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM models WHERE fingerprint = ?", (fingerprint,)
            ).fetchall()
        return [_record(row) for row in rows]

    def delete(self, model_id: int) -> None:
        """Forget a record (the file itself is left alone)."""
        with self.session() as db:
            db.execute("DELETE FROM models WHERE id = ?", (model_id,))

    def set_notes(self, model_id: int, notes: str) -> None:
        self.save({"notes": str(notes)}, model_id=model_id)

    def mark_used(self, model_id: int) -> None:
        self.save({"last_used": time.time()}, model_id=model_id)

    # ------------------------------------------------------------------ folders
    def folders(self) -> list[Path]:
        with self.session() as db:
            return [Path(r[0]) for r in db.execute("SELECT path FROM model_folders ORDER BY path")]

    def add_folder(self, path: str | os.PathLike) -> Path:
        folder = Path(path).expanduser()
        if not folder.is_dir():
            raise InputError(f"'{folder}' is not a folder. Pick a folder that holds models.")
        key = _key(folder)
        with self.session() as db:
            db.execute(
                "INSERT OR IGNORE INTO model_folders (path, added) VALUES (?, ?)",
                (key, time.time()),
            )
        return Path(key)

    def remove_folder(self, path: str | os.PathLike) -> None:
        """Stop scanning a folder and forget its records (its files are left alone)."""
        key = _key(path)
        with self.session() as db:
            db.execute("DELETE FROM model_folders WHERE path = ?", (key,))
            db.execute("DELETE FROM models WHERE source = ?", (f"folder:{key}",))


def _key(path: str | os.PathLike) -> str:
    """Paths are stored absolute and normalised so one file has one record."""
    return str(Path(path).expanduser().resolve())


def _record(row: sqlite3.Row) -> ModelRecord:
    return ModelRecord(**{name: row[name] for name in _COLUMNS})


def find_record_path(reference: str) -> str | None:
    """Path of the library model named or numbered `reference` (for `resolve_model`)."""
    from engine.paths import database_path

    if not database_path().exists():
        return None
    record = ModelLibrary().find(reference)
    if record is None or record.status == "missing":
        return None
    return record.path
