"""Canvas interaction: zoom, fit, 100%, pan, tools and their shortcut keys, mask overlay."""

from __future__ import annotations

from PIL import Image
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication

from engine.history import HistoryStore


def _wheel(view, clicks: int) -> None:
    pos = QPointF(view.viewport().width() / 2, view.viewport().height() / 2)
    event = QWheelEvent(
        pos,
        view.viewport().mapToGlobal(pos),
        QPoint(0, 0),
        QPoint(0, 120 * clicks),
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(view.viewport(), event)


def _key(qtbot, window, key, modifier=Qt.KeyboardModifier.NoModifier):
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=3000)
    qtbot.keyClick(window.canvas, key, modifier)


def test_zoom_fit_actual_size_and_pan(qtbot, window, image_file):
    canvas = window.canvas
    window.images.open_path(image_file)
    fitted = canvas.zoom
    assert fitted > 1.5  # a 96x64 image is enlarged to fill the view
    _wheel(canvas, 2)
    assert abs(canvas.zoom - fitted * 1.15**2) < 1e-6
    _key(qtbot, window, Qt.Key.Key_1, Qt.KeyboardModifier.ControlModifier)
    assert canvas.zoom == 1.0 and window.zoom_label.text() == "100%"
    _key(qtbot, window, Qt.Key.Key_0, Qt.KeyboardModifier.ControlModifier)
    assert abs(canvas.zoom - fitted) < 1e-6
    canvas.set_zoom(8)
    before = canvas.horizontalScrollBar().value()
    viewport = canvas.viewport()
    centre = QPoint(viewport.width() // 2, viewport.height() // 2)
    qtbot.mousePress(viewport, Qt.MouseButton.MiddleButton, pos=centre)
    qtbot.mouseMove(viewport, centre + QPoint(-40, 0))
    qtbot.mouseRelease(viewport, Qt.MouseButton.MiddleButton, pos=centre + QPoint(-40, 0))
    assert canvas.horizontalScrollBar().value() > before
    assert not window.document.has_mask()  # panning never paints


def test_tool_and_brush_size_keys(qtbot, window, image_file):
    window.images.open_path(image_file)
    canvas = window.canvas
    start = canvas.brush_size
    _key(qtbot, window, Qt.Key.Key_BracketRight)
    assert canvas.brush_size > start and window.size_slider.value() == canvas.brush_size
    _key(qtbot, window, Qt.Key.Key_BracketLeft)
    _key(qtbot, window, Qt.Key.Key_BracketLeft)
    assert canvas.brush_size < start
    window.size_slider.setValue(77)
    assert canvas.brush_size == 77 and window.size_label.text().strip() == "77 px"
    _key(qtbot, window, Qt.Key.Key_E)
    assert canvas.tool == "eraser" and window.eraser_action.isChecked()
    _key(qtbot, window, Qt.Key.Key_B)
    assert canvas.tool == "brush" and not window.eraser_action.isChecked()
    _key(qtbot, window, Qt.Key.Key_M)
    assert not canvas._mask_item.isVisible()
    _key(qtbot, window, Qt.Key.Key_M)
    assert canvas._mask_item.isVisible()


def test_mask_overlay_is_translucent_colour(qtbot, window, image_file):
    window.images.open_path(image_file)
    doc = window.document
    doc.begin_stroke()
    doc.paint_segment(QPointF(20, 20), QPointF(40, 20), 10, False)
    doc.end_stroke()
    overlay = window.canvas._mask_item.pixmap().toImage()
    painted, clear = overlay.pixelColor(30, 20), overlay.pixelColor(80, 50)
    assert painted.alpha() == 255 and painted.red() > 200 and clear.alpha() == 0
    assert 0.2 < window.canvas._mask_item.opacity() < 0.8
    window.invert_mask_action.trigger()
    assert window.canvas._mask_item.pixmap().toImage().pixelColor(80, 50).alpha() == 255
    window.clear_mask_action.trigger()
    assert not doc.has_mask()


def test_large_gallery_opens_with_placeholders_then_thumbnails(qtbot, make_window):
    store = HistoryStore()
    for i in range(40):
        store.add(Image.new("RGB", (32, 32), (i * 6, 90, 200)), {"prompt": f"image {i}"})
    window = make_window()
    panel = window.gallery_panel
    assert panel.list.count() == 40
    qtbot.waitUntil(lambda: not panel.loading, timeout=5000)
    assert panel.title.text() == "GALLERY · 40"


def test_live_preview_over_the_image_or_alone(qtbot, window, fake, image_file):
    from desktop.testing.fake_engine import Script

    window.images.open_path(image_file)  # 96x64 on the canvas
    canvas = window.canvas
    window.settings.set("mode", "txt2img")
    window.settings.set("width", 64)
    window.settings.set("height", 64)
    fake.scripts.append(Script(steps=4, pause_at=3))
    window.generation.generate()
    qtbot.waitUntil(lambda: not canvas._preview_item.pixmap().isNull(), timeout=5000)
    assert not canvas._image_item.isVisible()  # a square preview is shown alone
    fake.release()
    qtbot.waitUntil(lambda: not window.job.busy, timeout=5000)
    assert canvas._image_item.isVisible() and canvas._preview_item.pixmap().isNull()
    assert window.document.size() == (64, 64)
    window.settings.set("mode", "img2img")  # same shape as the canvas: drawn over it
    fake.scripts.append(Script(steps=4, pause_at=3))
    window.generation.generate()
    qtbot.waitUntil(lambda: not canvas._preview_item.pixmap().isNull(), timeout=5000)
    assert canvas._image_item.isVisible()
    fake.release()
    qtbot.waitUntil(lambda: not window.job.busy, timeout=5000)
