"""The bridge delivers every engine event sequence as GUI-thread signals, in order."""

from __future__ import annotations

import shutil
import threading

import pytest
from PySide6.QtGui import QImage

from desktop.bridge import EngineBridge
from desktop.testing.fake_engine import FakeEngine
from engine.api import GenerationRequest
from engine.history import HistoryStore

SIGNALS = ("queued", "started", "progress", "preview", "result", "failed", "cancelled")


@pytest.fixture
def bridge_and_log(qtbot):
    holder = []

    def factory(sink):
        holder.append(FakeEngine(sink))
        return holder[-1]

    bridge = EngineBridge(factory, preload=())
    log = []
    gui_thread = threading.current_thread()
    for name in SIGNALS:

        def record(*args, name=name):
            assert threading.current_thread() is gui_thread  # never on the worker
            log.append((name, args))

        getattr(bridge, name).connect(record)
    with qtbot.waitSignal(bridge.engine_ready, timeout=5000):
        bridge.start()
    yield bridge, holder[0], log
    assert bridge.shutdown(timeout=10)


def _names(log):
    return [name for name, _ in log]


def _request(**kw):
    return GenerationRequest(prompt="x", width=32, height=24, **kw)


def test_result_sequence_stores_the_batch(qtbot, bridge_and_log):
    bridge, fake, log = bridge_and_log
    fake.queue_script(steps=2)
    with qtbot.waitSignal(bridge.result, timeout=5000) as blocker:
        job = bridge.submit(_request(batch_size=3))
    assert _names(log) == [
        "queued",
        "started",
        "progress",
        "preview",
        "progress",
        "preview",
        "result",
    ]
    progress = [args for name, args in log if name == "progress"]
    assert [(a[1], a[2]) for a in progress] == [(1, 2), (2, 2)]
    preview = next(args for name, args in log if name == "preview")
    assert isinstance(preview[1], QImage) and preview[1].size().width() == 32
    job_id, entries, _info = blocker.args
    assert job_id == job and len(entries) == 3
    assert [e.id for e in HistoryStore().entries()] == [e.id for e in entries]


def test_failed_sequence_carries_the_message(qtbot, bridge_and_log):
    bridge, fake, log = bridge_and_log
    fake.queue_script(steps=1, outcome="failed", message="Model not found: 'x'.", kind="ModelError")
    with qtbot.waitSignal(bridge.failed, timeout=5000) as blocker:
        bridge.submit(_request())
    assert blocker.args[1:] == ["Model not found: 'x'.", "ModelError"]
    assert "result" not in _names(log)


def test_cancel_mid_run(qtbot, bridge_and_log):
    bridge, fake, log = bridge_and_log
    fake.queue_script(steps=5, pause_at=3)
    job = bridge.submit(_request())
    assert fake.paused.wait(5)
    with qtbot.waitSignal(bridge.cancelled, timeout=5000):
        bridge.cancel(job)
    steps = [args[1] for name, args in log if name == "progress"]
    assert steps == [1, 2] and "result" not in _names(log)


def test_engine_reported_cancel_and_queue_order(qtbot, bridge_and_log):
    bridge, fake, log = bridge_and_log
    fake.queue_script(steps=1, outcome="cancelled")
    fake.queue_script(steps=1)
    first = bridge.submit(_request())
    with qtbot.waitSignal(bridge.result, timeout=5000):
        second = bridge.submit(_request())
    finals = [(n, a[0]) for n, a in log if n in ("result", "cancelled")]
    assert finals == [("cancelled", first), ("result", second)]


def test_broken_engine_load_is_reported(qtbot):
    bridge = EngineBridge(FakeEngine, preload=("engine.no_such_module_here",))
    with qtbot.waitSignal(bridge.engine_failed, timeout=5000) as blocker:
        bridge.start()
    assert "could not load" in blocker.args[0]
    assert bridge.shutdown(timeout=10)


def test_unsavable_result_ends_the_job_as_failed(qtbot, bridge_and_log, monkeypatch):
    bridge, fake, log = bridge_and_log

    def broken(*args, **kwargs):
        raise ValueError("disk says no")

    monkeypatch.setattr(bridge._history, "add_batch", broken)
    with qtbot.waitSignal(bridge.failed, timeout=5000) as blocker:
        bridge.submit(_request())
    assert "disk says no" in blocker.args[1] and "result" not in _names(log)


def test_warm_up_imports_in_the_background_once(qtbot):
    import sys

    bridge = EngineBridge(
        FakeEngine, preload=("json",), warm_up=("xml.dom.minidom", "email:message_from_string")
    )
    with qtbot.waitSignal(bridge.engine_ready, timeout=5000):
        bridge.start()
    assert not bridge.warm
    states = []
    bridge.warming.connect(states.append)
    try:
        assert bridge.warm_up()
        qtbot.waitUntil(lambda: bridge.warm, timeout=10_000)
        assert states == [True, False] and "xml.dom.minidom" in sys.modules
        assert not bridge.warm_up()  # once
    finally:
        assert bridge.shutdown(timeout=10)


def test_choosing_a_model_builds_its_tokenizers_in_the_background(qtbot, tmp_path):
    from engine.paths import resource
    from engine.sd import tokenizers

    model = tmp_path / "sd-folder"
    shutil.copytree(resource("tokenizers", "clip"), model / "tokenizer")
    (model / "model_index.json").write_text('{"tokenizer": ["transformers", "CLIPTokenizer"]}')
    bridge = EngineBridge(FakeEngine, preload=("json",), warm_up=("transformers:CLIPTokenizer",))
    with qtbot.waitSignal(bridge.engine_ready, timeout=5000):
        bridge.start()
    try:
        bridge.warm_up()
        assert bridge.prepare_model(str(model))
        assert not bridge.prepare_model(str(model))  # already on it
        qtbot.waitUntil(lambda: bridge.prepared_model == str(model), timeout=60_000)
        key = tokenizers.content_key(model / "tokenizer")
        assert key in tokenizers._cache
    finally:
        assert bridge.shutdown(timeout=10)


def test_imports_run_with_the_collector_paused_and_leave_a_frozen_heap():
    import gc

    from desktop import heavy_imports

    frozen_before = gc.get_freeze_count()
    seen = []
    with heavy_imports.collector_paused("test-stage"):
        heavy_imports.import_all(["colorsys", "string:capwords"], optional=False)
        seen.append(gc.isenabled())
    assert seen == [False] and gc.isenabled()
    assert gc.get_freeze_count() > frozen_before
    with pytest.raises(ModuleNotFoundError):
        heavy_imports.import_all(["no_such_module_here"], optional=False)
    heavy_imports.import_all(["no_such_module_here"], optional=True)  # logged, not raised
