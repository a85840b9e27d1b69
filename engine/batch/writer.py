"""Saving a batch's results: each image as a PNG with full metadata, then its manifest row; and
the rate meter behind the progress bar (images/s, time left)."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field
from typing import Any

from engine.batch.manifest import DONE, FAILED, Manifest
from engine.batch.spec import BatchItem
from engine.errors import OutputError


class BatchWriter:
    """Writes results as they arrive (PNG first, then the row: a row always has its file)."""

    def __init__(self, manifest: Manifest):
        self.manifest = manifest

    def write_image(
        self,
        item: BatchItem,
        image: Any,
        metadata: dict,
        *,
        started_at: float,
        seconds: float,
        device: str,
        worker: str,
    ) -> dict:
        from engine.metadata import save_png_with_metadata

        path = self.manifest.out_dir / item.file_name
        metadata = {**metadata, "batch_key": item.key, "batch_index": item.index}
        try:
            save_png_with_metadata(image, path, metadata)
        except OSError as exc:
            raise OutputError(f"Could not write '{path}' ({exc}).") from exc
        row = self._row(item, DONE, started_at, seconds, device, worker)
        row["file"] = item.file_name
        self.manifest.append(row)
        return row

    def write_failure(
        self,
        item: BatchItem,
        message: str,
        kind: str,
        *,
        started_at: float,
        seconds: float,
        device: str = "",
        worker: str = "",
    ) -> dict:
        row = self._row(item, FAILED, started_at, seconds, device, worker)
        row.update(file=None, error=message, error_kind=kind)
        self.manifest.append(row)
        return row

    @staticmethod
    def _row(item, status, started_at, seconds, device, worker) -> dict:
        return {
            "key": item.key,
            "index": item.index,
            "status": status,
            "request": item.request.to_dict(),
            "seed": item.request.seed,
            "started_at": round(started_at, 3),
            "finished_at": round(time.time(), 3),
            "seconds": round(seconds, 3),
            "device": device,
            "worker": worker,
        }


def local_worker_name() -> str:
    import os

    return f"local:{socket.gethostname()}:{os.getpid()}"


@dataclass
class RateMeter:
    """Images/s over this run's finished items and the time the rest will take at that rate."""

    total: int
    done: int = 0
    failed: int = 0
    started: float = field(default_factory=time.perf_counter)
    first_finished: float | None = None

    @property
    def finished(self) -> int:
        return self.done + self.failed

    def add(self, *, ok: bool) -> None:
        if ok:
            self.done += 1
        else:
            self.failed += 1
        if self.first_finished is None:
            self.first_finished = time.perf_counter()

    @property
    def images_per_second(self) -> float:
        """The steady rate, measured from the first finished image on: the first one carries
        the model load, which would make the time left far too long for a big batch."""
        now = time.perf_counter()
        if self.finished >= 2 and self.first_finished is not None:
            elapsed = now - self.first_finished
            return (self.finished - 1) / elapsed if elapsed > 0 else 0.0
        elapsed = now - self.started
        return self.finished / elapsed if elapsed > 0 and self.finished else 0.0

    @property
    def seconds_left(self) -> float | None:
        rate = self.images_per_second
        return (self.total - self.finished) / rate if rate else None

    def info(self) -> dict:
        return {
            "images_per_second": round(self.images_per_second, 4),
            "seconds_left": self.seconds_left,
            "done": self.done,
            "failed": self.failed,
        }


def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
