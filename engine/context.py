"""What a running job sees of the engine: cancel token, progress and preview reporting, and the
shared model cache. Kept apart from the worker so job code can be tested without a thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from engine.errors import JobCancelled
from engine.events import Event, Preview, Progress


class JobContext:
    """Handed to every job handler.

    Handlers call `check_cancelled()` between steps (raising JobCancelled stops the job
    promptly), `progress(step, total, **info)` once per step and `preview(image)` when they have a
    cheap preview. Previews are throttled so a fast model cannot flood the GUI thread.
    """

    PREVIEW_MIN_INTERVAL_S = 0.05

    def __init__(
        self,
        job_id: int,
        emit: Callable[[Event], None],
        *,
        cancel_event: threading.Event | None = None,
        services: Any = None,
    ):
        self.job_id = job_id
        self._emit = emit
        self.cancel_event = cancel_event or threading.Event()
        self.services = services
        self._last_preview = 0.0
        self.started_at = time.perf_counter()
        #: what the user should know about how the job ran (a fallback taken, a picture scaled)
        self.notices: list[str] = []
        # time left comes from measured steps only: loading and the first step (warm-up, lazy
        # allocations) are far slower than the rest, so the clock starts at the first step
        self._first_step: tuple[int, float] | None = None

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    def check_cancelled(self) -> None:
        if self.cancel_event.is_set():
            raise JobCancelled()

    def notice(self, text: str) -> None:
        """Tell the user something about this job's result; shown with it, not an error."""
        if text not in self.notices:
            self.notices.append(text)

    def progress(self, step: int, total: int, **info: Any) -> None:
        if "seconds_left" not in info:
            estimate = self._seconds_left(step, total)
            if estimate is not None:
                info["seconds_left"] = estimate
        self._emit(Progress(self.job_id, step=step, total=total, info=info))

    def _seconds_left(self, step: int, total: int) -> float | None:
        """Seconds per step measured since the first step, times the steps left; None until
        at least one whole step has been timed (or while a stage such as loading runs)."""
        now = time.perf_counter()
        if step <= 0 or (self._first_step is not None and step < self._first_step[0]):
            self._first_step = None  # a new phase (loading, a second pass) starts over
            return None
        if self._first_step is None:
            self._first_step = (step, now)
            return None
        first_step, first_time = self._first_step
        if step == first_step or total <= step:
            return None
        return (now - first_time) / (step - first_step) * (total - step)

    def preview_due(self) -> bool:
        """Whether a preview made now would be shown (not throttled away): lets a job skip
        making one that costs more than a matmul (the tiny decoder)."""
        return time.perf_counter() - self._last_preview >= self.PREVIEW_MIN_INTERVAL_S

    def preview(self, image: Any, *, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self._last_preview < self.PREVIEW_MIN_INTERVAL_S:
            return
        self._last_preview = now
        self._emit(Preview(self.job_id, image=image))

    @property
    def cache(self):
        """The engine-wide model cache (created on first use so import stays light)."""
        if self.services is None:
            from engine.services import Services

            self.services = Services()
        return self.services.cache
