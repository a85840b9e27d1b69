"""The worker: job order, events, failures that do not kill it, cancellation, shutdown."""

from __future__ import annotations

import threading
import time

import pytest

from engine import jobs
from engine.errors import InputError
from engine.events import Cancelled, Failed, Progress, Queued, Result, Started
from engine.worker import Engine


class CountingRequest:
    def __init__(self, steps=5, fail_with=None, delay=0.0):
        self.steps = steps
        self.fail_with = fail_with
        self.delay = delay


def counting_handler(request, ctx):
    for step in range(1, request.steps + 1):
        ctx.check_cancelled()
        if request.fail_with is not None:
            raise request.fail_with
        time.sleep(request.delay)
        ctx.progress(step, request.steps)
    return Result(ctx.job_id, images=[], metadata=[], info={"steps": request.steps})


@pytest.fixture(autouse=True)
def counting_jobs():
    jobs.register_handler(CountingRequest, counting_handler)
    yield
    jobs.HANDLERS.pop("CountingRequest", None)


def collect(engine):
    events = []
    lock = threading.Lock()

    def sink(event):
        with lock:
            events.append(event)

    engine.subscribe(sink)
    return events


def test_events_in_order(engine):
    events = collect(engine)
    final = engine.run(CountingRequest(steps=3))
    assert isinstance(final, Result)
    kinds = [type(e) for e in events]
    assert kinds == [Queued, Started, Progress, Progress, Progress, Result]
    assert [e.step for e in events if isinstance(e, Progress)] == [1, 2, 3]


def test_failure_then_success(engine):
    failed = engine.run(CountingRequest(fail_with=InputError("Steps out of range.")))
    assert isinstance(failed, Failed)
    assert failed.message == "Steps out of range."
    assert failed.kind == "InputError"
    crashed = engine.run(CountingRequest(fail_with=ZeroDivisionError("boom")))
    assert isinstance(crashed, Failed) and "boom" in crashed.message
    assert isinstance(engine.run(CountingRequest(steps=2)), Result)


def test_cancel_running_job_stops_within_a_step(engine):
    events = collect(engine)
    job = engine.submit(CountingRequest(steps=200, delay=0.01))
    deadline = time.time() + 10
    while not any(isinstance(e, Progress) and e.step >= 3 for e in events):
        assert time.time() < deadline
        time.sleep(0.005)
    engine.cancel(job)
    while not any(isinstance(e, (Cancelled, Result)) for e in events):
        assert time.time() < deadline
        time.sleep(0.005)
    steps = [e.step for e in events if isinstance(e, Progress)]
    assert isinstance(events[-1], Cancelled)
    assert max(steps) < 20


def test_cancel_queued_job_never_starts(engine):
    events = collect(engine)
    first = engine.submit(CountingRequest(steps=30, delay=0.01))
    second = engine.submit(CountingRequest(steps=3))
    engine.cancel(second)
    assert isinstance(engine.run(CountingRequest(steps=1)), Result)
    assert not any(isinstance(e, Started) and e.job_id == second for e in events)
    assert any(isinstance(e, Cancelled) and e.job_id == second for e in events)
    assert any(isinstance(e, Result) and e.job_id == first for e in events)


def test_shutdown_cancels_and_joins():
    engine = Engine()
    events = collect(engine)
    engine.submit(CountingRequest(steps=1000, delay=0.01))
    time.sleep(0.05)
    assert engine.shutdown(timeout=5)
    assert not engine.is_running
    assert isinstance(events[-1], Cancelled)
    with pytest.raises(RuntimeError):
        engine.submit(CountingRequest())


def test_broken_sink_does_not_kill_worker(engine):
    def broken(event):
        raise RuntimeError("listener bug")

    engine.subscribe(broken)
    assert isinstance(engine.run(CountingRequest(steps=2)), Result)


def test_unknown_request_fails_cleanly(engine):
    result = engine.run(object())
    assert isinstance(result, Failed)
    assert "cannot run" in result.message
