"""The Evaluate panel: scripted fake engine for the flows, the real engine for one full run."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from desktop.testing.fake_engine import FakeEngine, Script
from desktop.widgets.evaluate_panel import EvaluatePanel
from engine.api import EvaluateRequest, RuntimeOptions
from tests.understanding.conftest import save_crops

FAKE_INFO = {
    "fid": 123.456,
    "kid": 0.04321,
    "kid_std": 0.0012,
    "count_a": 40,
    "count_b": 38,
    "warnings": ["Only 38 images in the smaller set: FID is biased upwards."],
    "seconds": 12.5,
}


@pytest.fixture
def fake_engine():
    engine = FakeEngine(default=Script(steps=4, previews=False, extra_info=FAKE_INFO))
    yield engine
    assert engine.shutdown(10)


@pytest.fixture
def panel(qtbot, fake_engine, tmp_path):
    widget = EvaluatePanel(fake_engine)
    qtbot.addWidget(widget)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    widget.set_folders(tmp_path / "a", tmp_path / "b")
    widget.show()
    yield widget
    widget.close()


def test_evaluate_shows_fid_and_kid(qtbot, panel, fake_engine, tmp_path):
    with qtbot.waitSignal(panel.finished, timeout=5000) as blocker:
        qtbot.mouseClick(panel.evaluate_button, qtbot_left())
    assert blocker.args[0]["fid"] == pytest.approx(123.456)
    request = fake_engine.requests[-1]
    assert isinstance(request, EvaluateRequest)
    assert request.set_a == (str(tmp_path / "a"),) and request.batch_size == 32
    assert panel.fid_value.text() == "123.46"
    assert panel.kid_value.text() == "0.0432 ± 0.0012"
    assert "biased" in panel.warning_label.text()
    assert "Compared 40 with 38 images" in panel.status_label.text()
    assert panel.evaluate_button.isEnabled() and not panel.cancel_button.isEnabled()


def test_cancel_mid_run(qtbot, panel, fake_engine):
    fake_engine.queue_script(steps=5, pause_at=2, previews=False)
    panel.start()
    assert panel.running and panel.cancel_button.isEnabled()
    qtbot.waitUntil(fake_engine.paused.is_set, timeout=5000)
    qtbot.mouseClick(panel.cancel_button, qtbot_left())
    qtbot.waitUntil(lambda: not panel.running, timeout=5000)
    assert panel.status_label.text() == "Cancelled."
    assert panel.fid_value.text() == "–" and panel.evaluate_button.isEnabled()


def test_failures_and_bad_input_are_shown(qtbot, panel, fake_engine):
    fake_engine.queue_script(
        steps=1, outcome="failed", message="Set B has no images.", kind="InputError"
    )
    panel.start()
    qtbot.waitUntil(lambda: not panel.running, timeout=5000)
    assert panel.status_label.text() == "Set B has no images."
    submitted = len(fake_engine.requests)
    panel.set_folders("", "")
    panel.start()
    assert "Choose two sets" in panel.status_label.text()
    assert len(fake_engine.requests) == submitted  # nothing was sent to the engine


def test_closing_detaches_from_the_engine(qtbot, fake_engine):
    widget = EvaluatePanel(fake_engine)
    qtbot.addWidget(widget)
    assert widget._relay.sink in fake_engine._sinks
    widget.close()
    assert widget._relay.sink not in fake_engine._sinks


def test_real_engine_end_to_end_with_screenshot(qtbot, engine, sample_photos, tmp_path):
    save_crops(sample_photos["china"], tmp_path / "a", 2, seed=21, modes=("RGB", "L"))
    save_crops(sample_photos["flower"], tmp_path / "b", 2, seed=22, modes=("RGBA", "RGB"))
    widget = EvaluatePanel(engine, runtime=RuntimeOptions(cpu_threads=1))
    qtbot.addWidget(widget)
    widget.set_folders(tmp_path / "a", tmp_path / "b")
    widget.resize(560, 380)
    widget.show()
    with qtbot.waitSignal(widget.finished, timeout=120_000) as blocker:
        widget.start()
    assert blocker.args[0]["fid"] > 0 and blocker.args[0]["count_a"] == 2
    assert float(widget.fid_value.text()) == pytest.approx(blocker.args[0]["fid"], abs=0.01)
    shot = tmp_path / "evaluate_panel.png"
    assert widget.grab().save(str(shot))
    pixels = np.asarray(Image.open(shot).convert("L"))
    assert pixels.shape[0] >= 300 and pixels.std() > 10  # a drawn panel, not a blank one
    widget.close()


def qtbot_left():
    from PySide6.QtCore import Qt

    return Qt.MouseButton.LeftButton
