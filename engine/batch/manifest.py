"""The batch manifest: `manifest.jsonl` in the output folder, one row per finished item.

A row is written only after its PNG is complete on disk (the PNG itself is written atomically),
as one `write` of a whole line followed by fsync, so a crash at any moment leaves at most a torn
last line; opening the manifest again cuts that line off before anything is appended. A row
says: the item's key and index, "done" or "failed", the request, the output file, the seed, when
it ran and how long it took, the device and the worker. A rerun skips items whose latest row is
"done" and whose file is still there; failed items are tried again (the user may have fixed the
model they were missing), and the newer row supersedes the older one.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from engine.batch.filelock import lock
from engine.errors import InputError, OutputError

MANIFEST_NAME = "manifest.jsonl"
LOCK_NAME = ".batch.lock"
DONE = "done"
FAILED = "failed"


class Manifest:
    """Append rows safely; read what a previous run finished."""

    def __init__(self, out_dir: str | Path):
        self.out_dir = Path(out_dir).expanduser()
        self.path = self.out_dir / MANIFEST_NAME
        self._lock = threading.Lock()
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"Cannot create the output folder '{self.out_dir}' ({exc}).") from exc
        if self.out_dir.is_file():
            raise InputError(f"'{self.out_dir}' is a file; the batch needs a folder.")
        self._hold_lock()
        self._remove_stale_temp_files()
        self.rows: dict[str, dict[str, Any]] = {}
        self._load()

    def _hold_lock(self) -> None:
        """One run per folder: a second run at once would make every image twice. The lock
        goes with the process, so a killed run never leaves the folder locked."""
        self._lock_file = open(self.out_dir / LOCK_NAME, "w")  # noqa: SIM115 - held for life
        if not lock(self._lock_file, blocking=False):
            self._lock_file.close()
            raise InputError(
                f"Another batch is writing to '{self.out_dir}' right now. Wait for it to finish "
                "or stop it, or choose another output folder."
            ) from None

    def close(self) -> None:
        """Let another run use the folder (the lock also ends with the process)."""
        if not self._lock_file.closed:
            self._lock_file.close()

    def __enter__(self) -> Manifest:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _remove_stale_temp_files(self) -> None:
        """Half-written PNGs of a run that was killed (atomic writes leave `.NAME.png.*.tmp`)."""
        for temp in self.out_dir.glob(".*.png.*.tmp"):
            try:
                temp.unlink()
            except OSError:
                pass

    def _load(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        complete, _, torn = data.rpartition(b"\n")
        if torn:  # the last write was cut off by a crash: drop the partial line
            with open(self.path, "r+b") as handle:
                handle.truncate(len(complete) + 1 if complete else 0)
        for line in complete.splitlines():
            try:
                row = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue  # a damaged row: the item is simply made again
            if isinstance(row, dict) and "key" in row:
                self.rows[row["key"]] = row  # the latest row for a key wins

    def is_done(self, key: str) -> bool:
        row = self.rows.get(key)
        return bool(row and row.get("status") == DONE and (self.out_dir / row["file"]).is_file())

    def pending(self, items: Iterable) -> list:
        """The items a run still has to make."""
        return [item for item in items if not self.is_done(item.key)]

    def append(self, row: dict[str, Any]) -> None:
        """Write one row durably (thread-safe: a runner may call it from any thread)."""
        line = (json.dumps(row, sort_keys=True, default=str) + "\n").encode("utf-8")
        with self._lock:
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    os.write(fd, line)
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as exc:
                message = f"Could not write the batch manifest '{self.path}' ({exc})."
                raise OutputError(message) from exc
            self.rows[row["key"]] = row

    def counts(self) -> dict[str, int]:
        statuses = [row.get("status") for row in self.rows.values()]
        return {DONE: statuses.count(DONE), FAILED: statuses.count(FAILED)}


def read_rows(out_dir: str | Path) -> list[dict[str, Any]]:
    """Every complete row of a batch's manifest, in the order written (for reports and tests)."""
    path = Path(out_dir) / MANIFEST_NAME
    if not path.exists():
        return []
    rows = []
    for line in path.read_bytes().split(b"\n"):
        try:
            rows.append(json.loads(line))
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
    return rows


def batch_images(source: str | Path) -> list[Path] | None:
    """The images of a batch, for metrics: `source` is a batch's output folder or its
    manifest.jsonl. The manifest's finished images, in spec order (failed requests and other
    files are left out); None when `source` is not a batch."""
    source = Path(source)
    folder = source.parent if source.name == MANIFEST_NAME and source.is_file() else source
    if not (folder / MANIFEST_NAME).is_file():
        return None
    latest: dict[str, dict[str, Any]] = {}
    for row in read_rows(folder):
        if isinstance(row, dict) and "key" in row:
            latest[row["key"]] = row
    done = sorted(
        (row for row in latest.values() if row.get("status") == DONE and row.get("file")),
        key=lambda row: row.get("index", 0),
    )
    return [folder / row["file"] for row in done if (folder / row["file"]).is_file()]
