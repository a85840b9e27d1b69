"""The bridge between the GUI and the engine: it owns the engine and turns its events into Qt
signals delivered on the GUI thread.

The engine calls our sink on its worker thread. The sink does the slow work that must not run on
the GUI thread (writing results to the gallery store) and puts the outcome on a thread-safe
queue; a GUI-thread timer drains it every few ms, turns preview images into QImages and emits
the public signals. Widgets therefore only ever see GUI-thread signals (pytest-qt's `waitSignal`
needs that too). Why a queue and no Qt at all on the worker: with PySide6 6.12 a Python thread
that emits any signal (even `Signal()`) or builds a QImage while the GUI thread runs events
aborts the process ("deallocating None/True": a reference-count bug in shiboken).

Torch and the heavy libraries are imported on a loader thread started after the window shows,
while the GUI says "Loading engine…". After each round of imports the heap is frozen out of the
cyclic garbage collector (desktop/heavy_imports.py says why).
"""

from __future__ import annotations

import logging
import queue
import shutil
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtGui import QImage

from desktop.heavy_imports import collector_paused, import_all
from desktop.images import pil_to_qimage
from engine.errors import EaselError
from engine.events import Cancelled, Event, Failed, Preview, Progress, Queued, Result, Started
from engine.history import HistoryStore

log = logging.getLogger(__name__)

#: what the loader thread imports right after the window shows (torch: about +210 MB RSS)
DEFAULT_PRELOAD = ("torch", "engine.generate")
#: the Stable Diffusion stack, imported on the same kind of thread when an SD model is chosen
#: (`warm_up()`): importing diffusers/transformers holds the GIL in long stretches (0.2-0.7 s
#: GUI stalls measured) and costs about +200 MB, so it happens while the status bar says so,
#: not in the middle of the first generation and not for users of the built-in models only.
#: ("module:attribute" also touches a lazily imported name: diffusers and transformers import
#: most of their stack on first attribute access, which the first model load would pay for;
#: "module:function()" calls it)
WARM_UP = (
    "engine.sd.generate",
    "engine.sd.loading:import_lazy_modules()",
    "diffusers:StableDiffusionPipeline",
    "diffusers:StableDiffusionImg2ImgPipeline",
    "diffusers:StableDiffusionInpaintPipeline",
    "diffusers:StableDiffusionXLPipeline",
    "transformers:CLIPTextModel",
    "transformers:CLIPTokenizer",
)


def _real_engine(sink: Callable[[Event], None]):
    from engine.worker import Engine

    return Engine(sink)


class EngineBridge(QObject):
    engine_ready = Signal()
    engine_failed = Signal(str)
    warming = Signal(bool)  # the SD stack is being imported (True), or is ready (False)
    queued = Signal(int)
    started = Signal(int)
    progress = Signal(int, int, int, dict)  # job id, step, total, info
    preview = Signal(int, QImage)
    #: job id, history entries (one per image, in batch order), job info
    result = Signal(int, list, dict)
    #: job id, the batch's first image; emitted just before `result`
    result_image = Signal(int, QImage)
    failed = Signal(int, str, str)  # job id, message, kind
    cancelled = Signal(int)
    #: a live-painting job (submitted with `live=True`): job id, what happened, its payload.
    #: Kinds: "started" (None), "progress" ((step, total)), "preview" (QImage), "result"
    #: (LiveOutcome), "failed" (message), "cancelled" (None). Live jobs send none of the
    #: signals above: no progress bar, no gallery entry until the user keeps one.
    live_event = Signal(int, str, object)

    #: how often the GUI thread collects engine events (ms): well under one frame
    POLL_MS = 8

    def __init__(
        self,
        engine_factory: Callable[[Callable[[Event], None]], Any] | None = None,
        *,
        history: HistoryStore | None = None,
        preload: Sequence[str] = DEFAULT_PRELOAD,
        warm_up: Sequence[str] | None = None,
        parent: QObject | None = None,
    ):
        super().__init__(parent)
        self._factory = engine_factory or _real_engine
        self._history = history or HistoryStore()
        self._preload = tuple(preload)
        # warm-ups only make sense with the real engine's preload
        self._warm_up = tuple(WARM_UP if warm_up is None and preload else warm_up or ())
        self._engine = None
        self._loader: threading.Thread | None = None
        self._warmer: threading.Thread | None = None
        self._preparers: list[threading.Thread] = []
        self._preparing: str | None = None
        self.prepared_model: str | None = None  # the last model whose tokenizers are built
        self.ready = False
        self.warm = not self._warm_up  # True once the SD stack is imported
        self.output_folder = ""  # results are also copied here when set
        self._own_jobs: set[int] = set()
        self._live_jobs: set[int] = set()
        self._claiming = False
        self._claiming_live = False
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._timer = QTimer(self)
        self._timer.setInterval(self.POLL_MS)
        self._timer.timeout.connect(self.drain)

    # -- life cycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Create the engine (cheap) and load the heavy libraries in the background."""
        if self._engine is not None:
            return
        self._engine = self._factory(self._sink)
        self._timer.start()
        self._loader = threading.Thread(target=self._load, name="easel-engine-loader")
        self._loader.start()

    def _load(self) -> None:
        try:
            with collector_paused("preload"):
                import_all(self._preload, optional=False)
        except Exception as exc:  # a broken install: say so, keep the window usable
            log.exception("engine failed to load")
            self._inbox.put(("failed-load", f"The engine could not load: {exc}"))
            return
        self._inbox.put(("ready", None))

    def warm_up(self) -> bool:
        """Import the Stable Diffusion stack in the background (once). False if nothing to do."""
        if self.warm or self._warmer is not None:
            return False
        self._warmer = threading.Thread(target=self._warm, name="easel-engine-warm-up")
        self._warmer.start()
        self.warming.emit(True)
        return True

    def _warm(self) -> None:
        if self._loader is not None:
            self._loader.join()  # torch first: the SD stack imports it anyway
        with collector_paused("warm-up"):
            import_all(self._warm_up, optional=True)  # the job that needs one reports it
        self._inbox.put(("warm", None))

    def prepare_model(self, model: str) -> bool:
        """Build the tokenizers that loading `model` (a path) needs, in the background, while
        the user writes the prompt; the engine's load then finds them in its shared cache.
        False if there is nothing to do (the same model again, or no real engine)."""
        if not self._warm_up or model == self._preparing:
            return False
        self._preparing = model
        thread = threading.Thread(target=self._prepare, args=(model,), name="easel-model-prepare")
        self._preparers = [t for t in self._preparers if t.is_alive()] + [thread]
        thread.start()
        return True

    def _prepare(self, model: str) -> None:
        if self._warmer is not None:
            self._warmer.join()  # the libraries first
        try:
            from engine.sd.tokenizers import prefetch

            prefetch(model)
        except Exception:  # optional: the load reports any problem with the model itself
            log.warning("preparing %s failed", model, exc_info=True)
        self._inbox.put(("prepared", model))

    def shutdown(self, timeout: float = 30.0) -> bool:
        """Cancel every job and join the worker and loader threads."""
        stopped = True
        self._timer.stop()
        if self._engine is not None:
            stopped = bool(self._engine.shutdown(timeout=timeout))
        for thread in (self._loader, self._warmer, *self._preparers):
            if thread is not None:
                thread.join(timeout)
                stopped = stopped and not thread.is_alive()
        return stopped

    # -- requests ---------------------------------------------------------------------------
    def submit(self, request: Any, *, live: bool = False) -> int:
        """Submit a job whose events this bridge relays (and whose images it keeps). A `live`
        job's events come as `live_event` and its pictures are not kept (see `keep`)."""
        if self._engine is None:
            self.start()
        # the engine reports Queued synchronously inside submit(): that is how we claim the id
        self._claiming, self._claiming_live = True, live
        try:
            job_id = self._engine.submit(request)
        finally:
            self._claiming = self._claiming_live = False
        self._own_jobs.add(job_id)
        return job_id

    def keep(self, images: Sequence[Any], metadata: Sequence[dict]) -> list:
        """Keep pictures that arrived unkept (a live result the user keeps) as a normal result
        is kept: gallery PNG with metadata, SQLite row, output folder. GUI thread: one small
        picture takes a few ms. Raises OutputError (or OSError for the output folder)."""
        entries = self._history.add_batch(list(images), list(metadata))
        if self.output_folder:
            _copy_to(entries, Path(self.output_folder))
        return entries

    def cancel(self, job_id: int | None = None) -> None:
        """Cancel one of this bridge's jobs, or all of them when `job_id` is None."""
        if self._engine is None:
            return
        if job_id is not None:
            self._engine.cancel(job_id)
            return
        for own in list(self._own_jobs):
            self._engine.cancel(own)

    def port(self) -> EnginePort:
        """An engine-like handle for hosted tools (training, evaluation): same engine and worker,
        but their jobs are theirs: the bridge neither relays their events nor keeps their images."""
        if self._engine is None:
            self.start()
        return EnginePort(self._engine)

    # -- worker thread side -----------------------------------------------------------------
    def _sink(self, event: Event) -> None:
        """Runs on the engine's thread: no Qt here (see the module docstring)."""
        if isinstance(event, Queued) and self._claiming:
            self._own_jobs.add(event.job_id)
            if self._claiming_live:
                self._live_jobs.add(event.job_id)
        if event.job_id not in self._own_jobs:
            return  # a hosted tool's job: it listens for itself
        if isinstance(event, (Result, Failed, Cancelled)):
            self._own_jobs.discard(event.job_id)
        if event.job_id in self._live_jobs:
            self._sink_live(event)
            return
        if isinstance(event, Preview):
            if event.image is None:
                return
            payload = ("preview", event.job_id, event.image)
        elif isinstance(event, Result):
            payload = self._store_result(event)
        else:
            payload = ("event", event)
        self._inbox.put(payload)

    def _sink_live(self, event: Event) -> None:
        """A live job's event: nothing is written; the picture waits for the user's Keep."""
        if isinstance(event, (Result, Failed, Cancelled)):
            self._live_jobs.discard(event.job_id)
        if isinstance(event, Preview) and event.image is None:
            return
        self._inbox.put(("live", event))

    def _store_result(self, event: Result):
        metadata = list(event.metadata)
        try:
            entries = self._history.add_batch(event.images, metadata)
            if self.output_folder:
                _copy_to(entries, Path(self.output_folder))
        except (EaselError, OSError) as exc:
            return ("event", Failed(event.job_id, message=str(exc), kind="OutputError"))
        except Exception as exc:  # a bug here must still end the job for the GUI, never hang it
            log.exception("could not keep the result of job %s", event.job_id)
            message = f"Could not keep the result ({type(exc).__name__}: {exc})."
            return ("event", Failed(event.job_id, message=message, kind="internal"))
        first = event.images[0] if event.images else None
        return ("result", event.job_id, entries, dict(event.info), first)

    # -- GUI thread side --------------------------------------------------------------------
    def drain(self) -> None:
        """Deliver every event that arrived since the last call (GUI thread only)."""
        while True:
            try:
                payload = self._inbox.get_nowait()
            except queue.Empty:
                return
            self._deliver(payload)

    def _deliver(self, payload: tuple) -> None:
        kind = payload[0]
        if kind == "ready":
            self.ready = True
            self.engine_ready.emit()
        elif kind == "warm":
            self.warm = True
            self.warming.emit(False)
        elif kind == "prepared":
            self.prepared_model = payload[1]
        elif kind == "failed-load":
            self.engine_failed.emit(payload[1])
        elif kind == "preview":
            self.preview.emit(payload[1], pil_to_qimage(payload[2]))
        elif kind == "live":
            self._deliver_live(payload[1])
        elif kind == "result":
            if payload[4] is not None:  # the picture itself: no PNG decode on the GUI thread
                self.result_image.emit(payload[1], pil_to_qimage(payload[4]))
            self.result.emit(payload[1], payload[2], payload[3])
        else:
            self._deliver_event(payload[1])

    def _deliver_event(self, event: Event) -> None:
        if isinstance(event, Queued):
            self.queued.emit(event.job_id)
        elif isinstance(event, Started):
            self.started.emit(event.job_id)
        elif isinstance(event, Progress):
            self.progress.emit(event.job_id, event.step, event.total, dict(event.info))
        elif isinstance(event, Failed):
            self.failed.emit(event.job_id, event.message, event.kind)
        elif isinstance(event, Cancelled):
            self.cancelled.emit(event.job_id)

    def _deliver_live(self, event: Event) -> None:
        job_id = event.job_id
        if isinstance(event, Started):
            self.live_event.emit(job_id, "started", None)
        elif isinstance(event, Progress):
            self.live_event.emit(job_id, "progress", (event.step, event.total))
        elif isinstance(event, Preview):
            self.live_event.emit(job_id, "preview", pil_to_qimage(event.image))
        elif isinstance(event, Result):
            outcome = LiveOutcome(
                image=pil_to_qimage(event.images[0]) if event.images else None,
                images=list(event.images),
                metadata=list(event.metadata),
                info=dict(event.info),
            )
            self.live_event.emit(job_id, "result", outcome)
        elif isinstance(event, Failed):
            self.live_event.emit(job_id, "failed", event.message)
        elif isinstance(event, Cancelled):
            self.live_event.emit(job_id, "cancelled", None)


@dataclass
class LiveOutcome:
    """A live job's result, not yet kept: the first picture for the screen, every picture
    and its metadata for `EngineBridge.keep`, and the job info (timings, notices)."""

    image: QImage | None
    images: list = field(default_factory=list)
    metadata: list = field(default_factory=list)
    info: dict = field(default_factory=dict)


class EnginePort:
    """`submit`, `cancel`, `subscribe`, `unsubscribe` of the shared engine, for hosted tools."""

    def __init__(self, engine: Any):
        self._engine = engine

    def submit(self, request: Any) -> int:
        return self._engine.submit(request)

    def cancel(self, job_id: int | None = None) -> None:
        self._engine.cancel(job_id)

    def subscribe(self, sink: Callable[[Event], None]) -> None:
        self._engine.subscribe(sink)

    def unsubscribe(self, sink: Callable[[Event], None]) -> None:
        self._engine.unsubscribe(sink)


def _copy_to(entries: list, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for entry in entries:
        shutil.copy2(entry.image_path, folder / entry.image_path.name)
