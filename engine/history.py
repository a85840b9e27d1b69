"""The gallery store: every generated image kept as a PNG file plus a row in SQLite.

Files live in `engine.paths.gallery_dir()` (full image and a small thumbnail), the index in the
shared database (`engine.paths.database_path()`, table `history`). Writes are atomic (temp file,
fsync, rename) so a crash never leaves half an image. No Qt and no torch: the desktop app and the
CLI can both use it, and it is safe to call from the engine's worker thread (one sqlite
connection per call).
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import InputError, OutputError
from engine.paths import atomic_write_bytes, database_path, gallery_dir

THUMB_SIDE = 192
#: PNG text key for Easel's own metadata when engine.metadata is not available
METADATA_KEY = "easel-generation"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    batch_id TEXT NOT NULL,
    batch_index INTEGER NOT NULL DEFAULT 0,
    batch_size INTEGER NOT NULL DEFAULT 1,
    created_at REAL NOT NULL,
    image_path TEXT NOT NULL,
    thumb_path TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS history_created ON history (created_at);
"""

#: columns added after the first release: (name, SQL type and default). Older databases get
#: them on open (ALTER TABLE keeps every row) and are filled from each row's metadata, so
#: search and filters are plain indexed SQL instead of a JSON parse per row.
_ADDED_COLUMNS = (
    ("prompt", "TEXT NOT NULL DEFAULT ''"),
    ("model", "TEXT NOT NULL DEFAULT ''"),
    ("starred", "INTEGER NOT NULL DEFAULT 0"),
)
_ADDED_INDEXES = """
CREATE INDEX IF NOT EXISTS history_model ON history (model);
CREATE INDEX IF NOT EXISTS history_starred ON history (starred, created_at);
"""
_ORDER = " ORDER BY created_at DESC, batch_id, batch_index"


@dataclass(frozen=True)
class HistoryEntry:
    """One kept image: where its files are and the settings that made it."""

    id: int
    batch_id: str
    batch_index: int
    batch_size: int
    created_at: float
    image_path: Path
    thumb_path: Path
    width: int
    height: int
    metadata: dict
    starred: bool = False

    @property
    def prompt(self) -> str:
        return str(self.metadata.get("prompt", ""))

    def generation_request(self):
        """The `GenerationRequest` that made this image, or None if it cannot be rebuilt."""
        from engine.api import GenerationRequest

        if self.metadata.get("type", GenerationRequest.type_name) != GenerationRequest.type_name:
            return None  # an upscale or another kind of job: no generation settings
        fields = {k: v for k, v in self.metadata.items() if k not in ("init_image", "mask_image")}
        if "seed_used" in fields:  # the seed actually drawn for a random-seed request
            fields["seed"] = fields["seed_used"]
        fields["mode"] = "txt2img"  # init images are working files that may be gone
        try:
            return GenerationRequest.from_dict(fields)
        except InputError:
            return None


class HistoryStore:
    """Add, list and delete kept images. Cheap to construct; opens the database per call."""

    def __init__(
        self, db_path: str | os.PathLike | None = None, folder: str | os.PathLike | None = None
    ):
        self.db_path = Path(db_path) if db_path else database_path()
        self.folder = Path(folder) if folder else gallery_dir()
        with self._connect() as conn:
            conn.executescript(_SCHEMA)
            _migrate(conn)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.db_path, timeout=10)
        conn.row_factory = sqlite3.Row
        return conn

    # -- writing ----------------------------------------------------------------------------
    def add_batch(
        self, images: Sequence[Any], metadata: Sequence[dict] | None = None
    ) -> list[HistoryEntry]:
        """Keep a batch of PIL images (one job's result), with one metadata dict per image."""
        if not images:
            return []
        metadata = list(metadata or [])
        batch_id = uuid.uuid4().hex[:12]
        created = time.time()  # one time per batch, so a batch sorts together in its own order
        entries = []
        for index, image in enumerate(images):
            meta = metadata[index] if index < len(metadata) else {}
            entries.append(self._add_one(image, meta, batch_id, index, len(images), created))
        return entries

    def add(self, image: Any, metadata: dict | None = None) -> HistoryEntry:
        return self.add_batch([image], [metadata or {}])[0]

    def _add_one(
        self, image: Any, meta: dict, batch_id: str, index: int, size: int, created: float
    ) -> HistoryEntry:
        stem = f"{time.strftime('%Y%m%d-%H%M%S', time.localtime(created))}-{batch_id}-{index}"
        image_path = self.folder / f"{stem}.png"
        thumb_path = self.folder / "thumbs" / f"{stem}.jpg"
        meta = _json_safe(meta)
        try:
            write_png(image, image_path, meta)
            atomic_write_bytes(thumb_path, _thumbnail_bytes(image))
        except OSError as exc:
            raise OutputError(f"Could not save the image in the gallery ({exc}).") from exc
        # the PNG is written before its row: a crash in between leaves a picture the next
        # start adopts (engine.gallery_recovery), never a row pointing at a half file
        row = (batch_id, index, size, created, image_path, thumb_path, image.width, image.height)
        return self.get(self._insert_row(*row, meta))

    def _insert_row(
        self, batch_id, index, size, created, image_path, thumb_path, width, height, meta
    ) -> int:
        with self._connect() as conn:
            cursor = conn.execute(
                "INSERT INTO history (batch_id, batch_index, batch_size, created_at, image_path,"
                " thumb_path, width, height, metadata, prompt, model)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    batch_id,
                    index,
                    size,
                    created,
                    str(image_path),
                    str(thumb_path),
                    width,
                    height,
                    json.dumps(meta),
                    *_searchable(meta),
                ),
            )
            return cursor.lastrowid

    def known_paths(self) -> set[str]:
        with self._connect() as conn:
            return {row[0] for row in conn.execute("SELECT image_path FROM history")}

    def delete(self, entry_id: int) -> None:
        """Remove the row and both files (missing files are fine: the user may have moved them)."""
        entry = self.get(entry_id)
        if entry is None:
            return
        with self._connect() as conn:
            conn.execute("DELETE FROM history WHERE id = ?", (entry_id,))
        for path in (entry.image_path, entry.thumb_path):
            try:
                path.unlink()
            except FileNotFoundError:
                pass

    # -- reading ----------------------------------------------------------------------------
    def get(self, entry_id: int) -> HistoryEntry | None:
        with self._connect() as conn:
            row = conn.execute("SELECT * FROM history WHERE id = ?", (entry_id,)).fetchone()
        return _entry(row) if row else None

    def entries(self, limit: int | None = None) -> list[HistoryEntry]:
        """Newest first; within one batch, in batch order."""
        return self.search(limit=limit)

    def search(
        self,
        text: str = "",
        *,
        model: str = "",
        since: float | None = None,
        starred: bool = False,
        limit: int | None = None,
    ) -> list[HistoryEntry]:
        """Entries whose prompt holds every word of `text` (any case), made by `model`, made
        at or after `since` (a time.time() value), starred only if asked; newest first."""
        clauses, params = [], []
        for word in text.split():
            escaped = word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            clauses.append("prompt LIKE ? ESCAPE '\\'")
            params.append(f"%{escaped}%")
        if model:
            clauses.append("model = ?")
            params.append(model)
        if since is not None:
            clauses.append("created_at >= ?")
            params.append(float(since))
        if starred:
            clauses.append("starred = 1")
        query = "SELECT * FROM history"
        if clauses:
            query += " WHERE " + " AND ".join(clauses)
        query += _ORDER
        if limit is not None:
            query += " LIMIT ?"
            params.append(int(limit))
        with self._connect() as conn:
            rows = conn.execute(query, params).fetchall()
        return [_entry(r) for r in rows]

    def models(self) -> list[str]:
        """Every model that made an entry, for the gallery's model filter."""
        with self._connect() as conn:
            rows = conn.execute("SELECT DISTINCT model FROM history WHERE model != ''").fetchall()
        return sorted(r[0] for r in rows)

    def set_starred(self, entry_ids: Sequence[int], starred: bool) -> None:
        with self._connect() as conn:
            conn.executemany(
                "UPDATE history SET starred = ? WHERE id = ?",
                [(int(starred), int(i)) for i in entry_ids],
            )

    def count(self) -> int:
        with self._connect() as conn:
            return conn.execute("SELECT COUNT(*) FROM history").fetchone()[0]


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring an older database up to date in place: add the search columns, fill them from
    each row's metadata, add their indexes. Nothing is removed or rewritten otherwise."""
    present = {row[1] for row in conn.execute("PRAGMA table_info(history)")}
    missing = [(name, kind) for name, kind in _ADDED_COLUMNS if name not in present]
    for name, kind in missing:
        conn.execute(f"ALTER TABLE history ADD COLUMN {name} {kind}")
    if any(name in ("prompt", "model") for name, _ in missing):
        rows = conn.execute("SELECT id, metadata FROM history").fetchall()
        updates = []
        for row_id, raw in rows:
            try:
                meta = json.loads(raw)
            except json.JSONDecodeError:
                meta = {}
            updates.append((*_searchable(meta if isinstance(meta, dict) else {}), row_id))
        conn.executemany("UPDATE history SET prompt = ?, model = ? WHERE id = ?", updates)
    conn.executescript(_ADDED_INDEXES)


def _searchable(meta: dict) -> tuple[str, str]:
    """(prompt, model) as the gallery searches them: the user's own words when a style or a
    wildcard template changed the prompt, plus the prompt that ran."""
    extras = meta.get("extras") if isinstance(meta.get("extras"), dict) else {}
    prompt = str(meta.get("prompt", ""))
    for key in ("user_prompt", "prompt_template"):
        if extras.get(key) and str(extras[key]) not in prompt:
            prompt += "\n" + str(extras[key])
    return prompt, str(meta.get("model", ""))


def _entry(row: sqlite3.Row) -> HistoryEntry:
    try:
        metadata = json.loads(row["metadata"])
    except json.JSONDecodeError:
        metadata = {}
    return HistoryEntry(
        id=row["id"],
        batch_id=row["batch_id"],
        batch_index=row["batch_index"],
        batch_size=row["batch_size"],
        created_at=row["created_at"],
        image_path=Path(row["image_path"]),
        thumb_path=Path(row["thumb_path"]),
        width=row["width"],
        height=row["height"],
        metadata=metadata if isinstance(metadata, dict) else {},
        starred=bool(row["starred"]),
    )


def _json_safe(value: Any) -> Any:
    """Metadata may carry numbers from numpy/torch; keep only what JSON can store."""
    return json.loads(json.dumps(value, default=str))


def write_png(image: Any, path: str | os.PathLike, metadata: dict) -> Path:
    """Save a PNG with its generation settings embedded, atomically.

    Uses engine.metadata's writer (A1111-compatible text and Easel JSON); when it is missing or
    the settings are not a valid request, stores them as JSON under `METADATA_KEY`.
    """
    target = Path(path)
    try:
        from engine.metadata import save_png_with_metadata
    except ImportError:
        save_png_with_metadata = None
    if save_png_with_metadata is not None:
        try:
            return save_png_with_metadata(image, target, metadata)  # atomic itself
        except InputError:
            pass  # settings it cannot express as a request: keep them as plain JSON below
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text(METADATA_KEY, json.dumps(metadata))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info, compress_level=4)
    return atomic_write_bytes(target, buffer.getvalue())


def read_png_metadata(path: str | os.PathLike) -> dict | None:
    """Settings stored by `write_png`'s fallback writer, or None."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            text = getattr(image, "text", {}) or {}
    except (OSError, ValueError):
        return None
    raw = text.get(METADATA_KEY)
    if not raw:
        return None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def _thumbnail_bytes(image: Any) -> bytes:
    thumb = image.convert("RGB")
    thumb.thumbnail((THUMB_SIDE, THUMB_SIDE))
    buffer = io.BytesIO()
    thumb.save(buffer, format="JPEG", quality=88)
    return buffer.getvalue()
