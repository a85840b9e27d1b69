"""What a new user tripped over (issue 19): Evaluate window, the Mode box, first-run status,
time left, canvas zoom after a result of another size."""

from __future__ import annotations

from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QImage
from PySide6.QtWidgets import QAbstractButton, QApplication, QLabel, QLineEdit

from desktop.testing.fake_engine import FakeEngine
from desktop.widgets.evaluate_panel import EvaluatePanel
from engine.api import Mode
from engine.context import JobContext
from engine.metrics.images import list_images


def _pictures(folder, count, size=32):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.new("RGB", (size, size), (i * 20 % 255, 90, 160)).save(folder / f"{i}.png")


def test_evaluate_ignores_the_gallery_thumbnails(tmp_path):
    gallery = tmp_path / "gallery"
    _pictures(gallery, 14)
    _pictures(gallery / "thumbs", 14, size=8)
    _pictures(gallery / ".cache", 3)
    assert len(list_images([gallery])) == 14


def test_evaluate_window_closes_with_escape_and_its_close_button(qtbot):
    engine = FakeEngine()
    panel = EvaluatePanel(engine)
    qtbot.addWidget(panel)
    panel.show()
    qtbot.keyClick(panel, Qt.Key.Key_Escape)
    assert not panel.isVisible()
    panel.show()
    panel.close_button.click()
    assert not panel.isVisible()
    engine.shutdown()


def test_evaluate_layout_keeps_every_label_whole_at_its_smallest(qtbot):
    engine = FakeEngine()
    panel = EvaluatePanel(engine)
    qtbot.addWidget(panel)
    panel.show()
    panel._show_result(
        {"fid": 123.45, "kid": 0.0456, "kid_std": 0.002, "count_a": 14, "count_b": 14,
         "warnings": ["Set A has only 14 images: FID is unreliable below a few hundred."]}
    )  # fmt: skip
    panel.resize(1, 1)  # the smallest the user can make it
    QApplication.processEvents()
    widgets = panel.findChildren(QAbstractButton) + panel.findChildren(QLineEdit)
    widgets += [w for w in panel.findChildren(QLabel) if not w.wordWrap()]
    for widget in (w for w in widgets if not w.objectName().startswith("qt_")):
        assert widget.width() >= widget.minimumSizeHint().width(), widget
        assert widget.height() >= widget.minimumSizeHint().height(), widget
    assert panel.set_a_edit.width() >= 260
    engine.shutdown()


def test_tool_panels_open_centred_over_the_main_window(qtbot, window):
    panel = window.open_tool("desktop.widgets.evaluate_panel", "EvaluatePanel")
    centre = window.frameGeometry().center()
    assert abs(panel.frameGeometry().center().x() - centre.x()) < 40
    assert panel.pos().y() > 0


def test_mode_stays_through_a_result_of_another_size(qtbot, window, image_file):
    window.images.open_path(image_file)
    window.settings.set("mode", Mode.INPAINT.value)
    small = QImage(64, 64, QImage.Format.Format_ARGB32)
    small.fill(QColor(10, 200, 30))
    window.document.set_image(small, "Result")  # the mask cannot follow: another size
    assert window.settings.mode is Mode.INPAINT


def test_open_on_canvas_keeps_the_mode(qtbot, window, fake):
    window.settings.set("prompt", "a cat")
    window.generation.generate()
    qtbot.waitUntil(lambda: len(window.gallery.entries) == 1, timeout=5000)
    window.settings.set("mode", Mode.IMG2IMG.value)
    window.open_entry(window.gallery.entries[0], as_init=False)
    assert window.settings.mode is Mode.IMG2IMG


def test_status_bar_says_the_model_is_loading_not_ready(qtbot, window):
    job = window.job
    job.queued(41)
    job.started(41)
    job.progress(41, 0, 20, {"stage": "loading model"})
    assert "Loading model…" in window.engine_label.text()
    assert "ready" not in window.engine_label.text().lower()
    assert window.progress_label.text() == "Loading model…"
    job.progress(41, 1, 20, {})
    assert window.progress_label.text() == "Step 1/20 · timing steps…"
    job.progress(41, 2, 20, {"seconds_left": 9.0})
    assert window.progress_label.text() == "Step 2/20 · 9 s left"
    job.finished(41, "result")
    assert window.engine_label.text().endswith("Engine ready")


def test_time_left_comes_from_measured_steps_only(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr("engine.context.time.perf_counter", lambda: clock[0])
    events = []
    ctx = JobContext(1, events.append)
    clock[0] += 7.0  # loading the model
    ctx.progress(0, 10, stage="loading model")
    clock[0] += 3.0  # the first step: warm-up
    ctx.progress(1, 10)
    clock[0] += 0.5
    ctx.progress(2, 10)
    clock[0] += 0.5
    ctx.progress(3, 10)
    left = [e.info.get("seconds_left") for e in events]
    assert left[:2] == [None, None]
    assert abs(left[2] - 0.5 * 8) < 1e-9 and abs(left[3] - 0.5 * 7) < 1e-9


def test_a_result_of_another_size_is_fitted_like_the_first(qtbot, window, image_file):
    window.images.open_path(image_file)  # 96 x 64
    canvas = window.canvas
    first_fit = canvas.zoom
    canvas.set_zoom(8.8)
    bigger = QImage(192, 128, QImage.Format.Format_ARGB32)
    bigger.fill(QColor(200, 20, 20))
    window.document.set_image(bigger, "Upscale")
    assert abs(canvas.zoom - first_fit / 2) < 1e-6  # same on-screen size as the first fit
    shown = canvas.mapFromScene(canvas._image_item.sceneBoundingRect()).boundingRect()
    assert canvas.viewport().rect().contains(shown)
    window.document.undo_stack.undo()
    assert abs(canvas.zoom - first_fit) < 1e-6


def test_an_edit_that_comes_back_at_another_size_says_so(qtbot, window, fake, monkeypatch):
    """A native model makes its own size: a 128 px canvas may come back as 64 px."""
    monkeypatch.setattr("desktop.testing.fake_engine._size", lambda request: (64, 64))
    big = QImage(128, 128, QImage.Format.Format_ARGB32)
    big.fill(QColor(40, 90, 200))
    window.images.open_qimage(big)
    assert window.settings.mode is Mode.IMG2IMG
    window.generation.generate()
    qtbot.waitUntil(lambda: not window.job.busy, timeout=5000)
    assert "made 64 × 64 from the 128 × 128 canvas" in window.toast.label.text()
    assert window.settings.mode is Mode.IMG2IMG and window.document.size() == (64, 64)
