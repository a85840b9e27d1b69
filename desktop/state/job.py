"""The engine and the running job as the GUI sees them: loading state, step, time left.

Updated only from the bridge's GUI-thread signals; widgets (progress bar, buttons, status text)
bind to `changed`.
"""

from __future__ import annotations

import time

from PySide6.QtCore import QObject, Signal

ENGINE_LOADING = "loading"
ENGINE_READY = "ready"
ENGINE_BROKEN = "broken"


class JobState(QObject):
    """Jobs submitted and not finished, in order; the display follows the one that runs."""

    changed = Signal()

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.engine_state = ENGINE_LOADING
        self.engine_message = "Loading engine…"
        self.pending: list[int] = []
        self.job_id: int | None = None  # the job the progress bar shows
        self.running = False
        self.step = 0
        self.total = 0
        self.seconds_left: float | None = None
        self.stage = ""
        self.started_at = 0.0
        self.last_outcome = ""  # "result", "failed", "cancelled"

    @property
    def busy(self) -> bool:
        return bool(self.pending)

    def set_engine_state(self, state: str, message: str = "") -> None:
        self.engine_state = state
        self.engine_message = message
        self.changed.emit()

    def queued(self, job_id: int) -> None:
        """Called at submit time (and again by the engine's Queued event: harmless)."""
        if job_id in self.pending:
            return
        self.pending.append(job_id)
        if self.job_id is None:
            self._show(job_id)
        self.changed.emit()

    def _show(self, job_id: int | None) -> None:
        self.job_id = job_id
        self.running = False
        self.step, self.total, self.seconds_left = 0, 0, None
        self.stage = "Waiting…" if job_id is not None else ""

    def started(self, job_id: int) -> None:
        if job_id not in self.pending:
            return
        self._show(job_id)
        self.running = True
        self.started_at = time.monotonic()
        self.stage = "Starting…"
        self.changed.emit()

    def progress(self, job_id: int, step: int, total: int, info: dict) -> None:
        if job_id != self.job_id:
            return
        self.running = True
        self.step, self.total = step, total
        self.seconds_left = info.get("seconds_left")
        self.stage = str(info.get("stage", ""))
        self.changed.emit()

    def finished(self, job_id: int, outcome: str) -> None:
        if job_id not in self.pending:
            return
        self.pending.remove(job_id)
        self.last_outcome = outcome
        if job_id == self.job_id:
            self._show(self.pending[0] if self.pending else None)
        self.changed.emit()

    def progress_text(self) -> str:
        if not self.busy:
            return ""
        if not self.total:
            return self.stage or "Working…"
        if self.stage and self.running and self.stage != "Starting…":
            # a job that names its stages ("Finding styles and keywords", "loading model")
            stage = self.stage[:1].upper() + self.stage[1:]
            return f"{stage}…" if self.step == 0 else f"{stage} ({self.step}/{self.total})"
        text = f"Step {self.step}/{self.total}"
        if self.seconds_left is not None:
            text += f" · {format_seconds(self.seconds_left)} left"
        elif self.step < self.total:
            text += " · timing steps…"  # no guess until a whole step has been measured
        return text

    def activity(self) -> str:
        """What the engine does now, for the status bar's engine label: "" when idle."""
        if not self.busy:
            return ""
        if not self.running:
            return "Waiting for the engine…"
        if self.stage and self.stage != "Starting…" and self.step == 0:
            return self.stage[:1].upper() + self.stage[1:] + "…"
        if self.step == 0:
            return "Starting the job…"
        return "Generating"


def format_seconds(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    return f"{minutes} min {seconds:02d} s"
