"""A scriptable stand-in for `engine.worker.Engine` for GUI tests and screenshots.

Same interface (`submit`, `cancel`, `shutdown`, `subscribe`, `unsubscribe`) and the same
threading: events arrive on the fake's own worker thread, in the engine's order (Queued,
Started, Progress/Preview..., then Result, Failed or Cancelled). Each submitted job plays the
next `Script` from the queue (or the default script): how many steps, how long each takes, and
how it ends. Cancel is honoured between steps, like the real engine.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engine.events import Cancelled, Event, Failed, Preview, Progress, Queued, Result, Started

_STOP = object()
#: jobs whose result is information only (text, scores), like the real engine's: no images
INFO_ONLY = {
    "ExpandPromptRequest",
    "CaptionRequest",
    "InterrogateRequest",
    "ClipScoreRequest",
    "EvaluateRequest",
    "ScanLibraryRequest",
    "PreviewDecoderRequest",
}


@dataclass
class Script:
    """How one fake job plays out."""

    steps: int = 3
    step_seconds: float = 0.0
    outcome: str = "result"  # "result", "failed", "cancelled"
    message: str = "Something went wrong in the fake engine."
    kind: str = "ModelError"
    previews: bool = True
    #: wait here (before step `pause_at`) until `release()` is called; lets tests cancel mid-run
    pause_at: int | None = None
    colour: tuple[int, int, int] = (200, 80, 40)
    extra_info: dict = field(default_factory=dict)
    stage: str = ""  # named in every Progress event when set ("Finding styles and keywords")


class FakeEngine:
    def __init__(
        self, sink: Callable[[Event], None] | None = None, *, default: Script | None = None
    ):
        self._sinks = [sink] if sink else []
        self.default = default or Script()
        self.scripts: list[Script] = []
        self.requests: list[Any] = []
        self._ids = itertools.count(1)
        self._queue: queue.Queue = queue.Queue()
        self._cancelled: set[int] = set()
        self._active: set[int] = set()  # submitted and not finished
        self._lock = threading.Lock()
        self._released = threading.Event()
        self.paused = threading.Event()  # set while a job waits at `pause_at`
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="fake-engine", daemon=True)
        self._thread.start()

    # -- the engine interface -----------------------------------------------------------------
    def subscribe(self, sink: Callable[[Event], None]) -> None:
        self._sinks.append(sink)

    def unsubscribe(self, sink: Callable[[Event], None]) -> None:
        if sink in self._sinks:
            self._sinks.remove(sink)

    def submit(self, request: Any) -> int:
        if self._closed:
            raise RuntimeError("The engine has been shut down.")
        job_id = next(self._ids)
        self.requests.append(request)
        with self._lock:
            self._active.add(job_id)
        script = self.scripts.pop(0) if self.scripts else self.default
        self._emit(Queued(job_id, request=request))
        self._queue.put((job_id, request, script))
        return job_id

    def cancel(self, job_id: int | None = None) -> None:
        with self._lock:
            self._cancelled.update(self._active if job_id is None else {job_id})
        self._released.set()

    def shutdown(self, timeout: float | None = 30.0) -> bool:
        if not self._closed:
            self._closed = True
            self.cancel()
            self._queue.put(_STOP)
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # -- scripting helpers --------------------------------------------------------------------
    def queue_script(self, **options: Any) -> Script:
        script = Script(**options)
        self.scripts.append(script)
        return script

    def release(self) -> None:
        self._released.set()

    # -- worker -------------------------------------------------------------------------------
    def _is_cancelled(self, job_id: int) -> bool:
        with self._lock:
            return job_id in self._cancelled

    def _emit(self, event: Event) -> None:
        for sink in list(self._sinks):
            sink(event)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            job_id, request, script = item
            try:
                self._play(job_id, request, script)
            finally:
                with self._lock:
                    self._active.discard(job_id)

    def _play(self, job_id: int, request: Any, script: Script) -> None:
        if self._is_cancelled(job_id):
            self._emit(Cancelled(job_id))
            return
        self._emit(Started(job_id))
        for step in range(1, script.steps + 1):
            if script.pause_at == step:
                self.paused.set()
                self._released.wait(10)
                self._released.clear()
                self.paused.clear()
            if self._is_cancelled(job_id):
                self._emit(Cancelled(job_id))
                return
            if script.step_seconds:
                threading.Event().wait(script.step_seconds)
            left = (script.steps - step) * script.step_seconds
            info = {"stage": script.stage} if script.stage else {"seconds_left": left}
            self._emit(Progress(job_id, step=step, total=script.steps, info=info))
            if script.previews:
                self._emit(
                    Preview(job_id, image=_image(request, script.colour, step / script.steps))
                )
        if script.outcome == "failed":
            self._emit(Failed(job_id, message=script.message, kind=script.kind))
        elif script.outcome == "cancelled":
            self._emit(Cancelled(job_id))
        else:
            self._emit(_result(job_id, request, script))


def _size(request: Any) -> tuple[int, int]:
    return int(getattr(request, "width", 64) or 64), int(getattr(request, "height", 64) or 64)


def _image(request: Any, colour: tuple[int, int, int], fraction: float):
    """A soft radial gradient in `colour`, brighter as the job advances (a stand-in picture)."""
    from PIL import Image, ImageOps

    gradient = Image.radial_gradient("L").resize(_size(request))
    dark = tuple(int(c * 0.15) for c in colour)
    light = tuple(min(255, int(c * (0.4 + 0.6 * fraction)) + 40) for c in colour)
    return ImageOps.colorize(gradient, light, dark)


def _shift(colour: tuple[int, int, int], index: int) -> tuple[int, int, int]:
    """Batch images differ a little, as real ones would."""
    r, g, b = colour
    return [(r, g, b), (g, b, r), (b, r, g), (r, b, g)][index % 4]


def _result(job_id: int, request: Any, script: Script) -> Result:
    if type(request).__name__ in INFO_ONLY:
        return Result(job_id, info=dict(script.extra_info))
    count = int(getattr(request, "batch_size", 1) or 1)
    images = [_image(request, _shift(script.colour, i), 1.0) for i in range(count)]
    base = request.to_dict() if hasattr(request, "to_dict") else {}
    metadata = [dict(base, seed_used=int(base.get("seed", 0)) + i) for i in range(count)]
    return Result(job_id, images=images, metadata=metadata, info=dict(script.extra_info))
