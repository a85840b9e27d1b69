"""The engine: one long-lived worker thread that runs jobs from a queue, one at a time.

Interface (what the desktop bridge and the CLI use): `submit`, `cancel`, `shutdown`, and event
sinks added with `subscribe`. A failing job reports `Failed` and the worker takes the next one;
cancelling is cooperative (jobs check a token every step) and is not an error.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import traceback
from collections.abc import Callable
from typing import Any

from engine.errors import EaselError, JobCancelled
from engine.events import FINAL_EVENTS, Cancelled, Event, Failed, Queued, Result, Started

log = logging.getLogger(__name__)

EventSink = Callable[[Event], None]
_STOP = object()


class Engine:
    """Runs requests on a single worker thread and reports events to subscribed sinks."""

    def __init__(self, sink: EventSink | None = None, *, services: Any = None):
        self._sinks: list[EventSink] = [sink] if sink else []
        self._queue: queue.Queue = queue.Queue()
        self._ids = itertools.count(1)
        self._cancel_events: dict[int, threading.Event] = {}
        self._lock = threading.Lock()
        self._services = services
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="easel-engine", daemon=True)
        self._thread.start()

    # -- public interface -------------------------------------------------------------------
    def subscribe(self, sink: EventSink) -> None:
        self._sinks.append(sink)

    def unsubscribe(self, sink: EventSink) -> None:
        if sink in self._sinks:
            self._sinks.remove(sink)

    def submit(self, request: Any) -> int:
        """Queue a request; returns its job id. Events for it follow on the sinks."""
        if self._closed:
            raise RuntimeError("The engine has been shut down.")
        job_id = next(self._ids)
        with self._lock:
            self._cancel_events[job_id] = threading.Event()
        self._emit(Queued(job_id, request=request))
        self._queue.put((job_id, request))
        return job_id

    def cancel(self, job_id: int | None = None) -> None:
        """Cancel one job, or every queued and running job when `job_id` is None."""
        with self._lock:
            targets = list(self._cancel_events) if job_id is None else [job_id]
            for jid in targets:
                if jid in self._cancel_events:
                    self._cancel_events[jid].set()

    def shutdown(self, timeout: float | None = 30.0) -> bool:
        """Cancel everything and join the worker. Returns False if it did not stop in time."""
        if not self._closed:
            self._closed = True
            self.cancel()
            self._queue.put(_STOP)
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def is_running(self) -> bool:
        return self._thread.is_alive()

    def run(self, request: Any, timeout: float | None = None) -> Event:
        """Submit and block until the job's final event (Result, Cancelled or Failed).

        Timing out cancels the job and still waits for its final event.
        """
        finals: dict[int, Event] = {}
        arrived = threading.Condition()

        def sink(event: Event) -> None:
            if isinstance(event, FINAL_EVENTS):
                with arrived:
                    finals[event.job_id] = event
                    arrived.notify_all()

        self.subscribe(sink)
        try:
            job_id = self.submit(request)
            with arrived:
                if not arrived.wait_for(lambda: job_id in finals, timeout):
                    self.cancel(job_id)
                    arrived.wait_for(lambda: job_id in finals)
                return finals[job_id]
        finally:
            self.unsubscribe(sink)

    # -- worker side ------------------------------------------------------------------------
    def _emit(self, event: Event) -> None:
        for sink in list(self._sinks):
            try:
                sink(event)
            except Exception:  # a broken listener must never kill the worker
                log.exception("event sink failed on %r", event)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            job_id, request = item
            with self._lock:
                cancel_event = self._cancel_events.get(job_id) or threading.Event()
            try:
                self._run_job(job_id, request, cancel_event)
            finally:
                with self._lock:
                    self._cancel_events.pop(job_id, None)

    def _run_job(self, job_id: int, request: Any, cancel_event: threading.Event) -> None:
        from engine.context import JobContext
        from engine.jobs import run_request

        if cancel_event.is_set():
            self._emit(Cancelled(job_id))
            return
        self._emit(Started(job_id))
        ctx = JobContext(job_id, self._emit, cancel_event=cancel_event, services=self._services)
        try:
            result = run_request(request, ctx)
        except JobCancelled:
            self._emit(Cancelled(job_id))
        except EaselError as exc:
            self._emit(Failed(job_id, message=str(exc), kind=error_kind(exc)))
        except MemoryError:
            self._emit(
                Failed(
                    job_id,
                    message="Out of memory. Try a smaller size or batch, or enable memory "
                    "options (attention slicing, VAE tiling, offload) in Settings.",
                    kind="OutOfMemory",
                )
            )
        except Exception as exc:  # a bug or an unexpected library error: report, keep serving
            log.error("job %s failed:\n%s", job_id, traceback.format_exc())
            self._emit(Failed(job_id, message=_describe_unexpected(exc), kind="internal"))
        else:
            if cancel_event.is_set() and not isinstance(result, Result):
                self._emit(Cancelled(job_id))
            else:
                self._emit(result)
        finally:
            self._services = ctx.services  # keep the cache a job created for the next jobs


def error_kind(exc: EaselError) -> str:
    """The documented kind of an EaselError (InputError, ModelError, OutputError, EaselError):
    a subclass such as PictureError reports as its documented parent, so exit codes hold."""
    for cls in type(exc).__mro__:
        if cls.__module__ == "engine.errors":
            return cls.__name__
    return "EaselError"


def _describe_unexpected(exc: BaseException) -> str:
    name = type(exc).__name__
    text = str(exc).strip() or "no details"
    if "out of memory" in text.lower():
        return (
            "Out of GPU memory. Try a smaller size or batch, or enable attention slicing, "
            "VAE tiling or model offload in Settings."
        )
    return f"Unexpected error ({name}): {text}"
