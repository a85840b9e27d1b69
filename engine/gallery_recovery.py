"""After a crash: bring the gallery's index back in line with its folder.

The gallery writes each PNG (atomically) before its SQLite row, so a kill -9 can leave at most a
picture without a row, and temp files of writes that never finished. `recover_gallery` adopts
such pictures (their settings are in their own metadata chunk, so nothing is lost), rebuilds a
missing thumbnail, and removes stale temp files. The app runs it at start, off the GUI thread's
critical path (it lists one folder and reads only the orphans' text chunks).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from engine.history import THUMB_SIDE, HistoryStore

#: temp files younger than this may belong to a write still in progress in another process
STALE_TEMP_S = 600.0


@dataclass(frozen=True)
class Recovery:
    adopted: int = 0
    temp_removed: int = 0


def recover_gallery(store: HistoryStore, *, now: float | None = None) -> Recovery:
    """Index PNGs the database lacks and clear stale temp files; returns what it did."""
    now = time.time() if now is None else now
    folder = store.folder
    if not folder.is_dir():
        return Recovery()
    removed = _remove_stale_temps([folder, folder / "thumbs"], now)
    known = store.known_paths()
    adopted = 0
    for path in sorted(folder.glob("*.png")):
        if path.name.startswith(".") or str(path) in known:
            continue
        if _adopt(store, path):
            adopted += 1
    return Recovery(adopted=adopted, temp_removed=removed)


def _remove_stale_temps(folders: list[Path], now: float) -> int:
    removed = 0
    for folder in folders:
        for temp in folder.glob(".*.tmp"):
            try:
                if now - temp.stat().st_mtime > STALE_TEMP_S:
                    temp.unlink()
                    removed += 1
            except OSError:
                continue
    return removed


def _adopt(store: HistoryStore, path: Path) -> bool:
    """Insert the row a crash left out, from the PNG's own metadata; False if unreadable."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()  # a PNG under its final name is whole (atomic writes); check anyway
            width, height = image.size
            meta = _settings(image.info)
            thumb = store.folder / "thumbs" / f"{path.stem}.jpg"
            if not thumb.exists():
                _write_thumbnail(image, thumb)
    except (OSError, ValueError, SyntaxError):
        return False
    batch_id, index = _batch_of(path.stem)
    store._insert_row(batch_id, index, 1, path.stat().st_mtime, path, thumb, width, height, meta)
    return True


def _settings(info: dict) -> dict:
    for key in ("easel", "easel-generation"):
        text = info.get(key)
        if isinstance(text, str) and len(text) < 1_000_000:
            try:
                data = json.loads(text)
            except ValueError:
                continue
            if isinstance(data, dict):
                return data
    return {}


def _batch_of(stem: str) -> tuple[str, int]:
    """`YYYYmmdd-HHMMSS-<batch>-<index>` as the gallery names its files."""
    parts = stem.rsplit("-", 2)
    if len(parts) == 3 and parts[2].isdigit():
        return parts[1], int(parts[2])
    return stem, 0


def _write_thumbnail(image, path: Path) -> None:
    import io

    from engine.paths import atomic_write_bytes

    thumb = image.convert("RGB")
    thumb.thumbnail((THUMB_SIDE, THUMB_SIDE))
    buffer = io.BytesIO()
    thumb.save(buffer, format="JPEG", quality=85)
    atomic_write_bytes(path, buffer.getvalue())
