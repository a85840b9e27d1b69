"""Canvas edits: crop (tool and document), resize with the model's size rules, rotate, flip,
the sketch layer, layer visibility, upscale from the Canvas menu; each with undo."""

from __future__ import annotations

from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QColor, QImage

from desktop.widgets.canvas import CROP, SKETCH_PEN
from desktop.widgets.resize_dialog import ResizeDialog


def _picture(width=96, height=64) -> QImage:
    """Left half red, right half blue, a green pixel in the top-left corner."""
    image = QImage(width, height, QImage.Format.Format_ARGB32)
    image.fill(QColor(200, 0, 0))
    for x in range(width // 2, width):
        for y in range(height):
            image.setPixelColor(x, y, QColor(0, 0, 200))
    image.setPixelColor(0, 0, QColor(0, 255, 0))
    return image


def _open(window, image=None):
    window.images.open_qimage(image or _picture())
    return window.document


def test_crop_with_the_tool_and_undo(qtbot, window):
    doc = _open(window)
    canvas = window.canvas
    window.crop_action.trigger()
    assert canvas.tool == CROP and window.crop_action.isChecked()
    start = canvas.mapFromScene(QPointF(10, 8))
    end = canvas.mapFromScene(QPointF(58, 40))
    qtbot.mousePress(canvas.viewport(), Qt.MouseButton.LeftButton, pos=start)
    qtbot.mouseMove(canvas.viewport(), end)
    assert canvas.crop_rect() is not None
    qtbot.mouseRelease(canvas.viewport(), Qt.MouseButton.LeftButton, pos=end)
    width, height = doc.size()
    assert abs(width - 48) <= 2 and abs(height - 32) <= 2
    assert doc.mask.size() == doc.image.size() == doc.sketch.size()
    doc.undo_stack.undo()
    assert doc.size() == (96, 64)


def test_escape_drops_a_crop_being_dragged(qtbot, window):
    doc = _open(window)
    canvas = window.canvas
    canvas.set_tool(CROP)
    qtbot.mousePress(canvas.viewport(), Qt.MouseButton.LeftButton, pos=canvas.mapFromScene(5, 5))
    qtbot.mouseMove(canvas.viewport(), canvas.mapFromScene(40, 40))
    qtbot.keyClick(canvas, Qt.Key.Key_Escape)
    qtbot.mouseRelease(
        canvas.viewport(), Qt.MouseButton.LeftButton, pos=canvas.mapFromScene(40, 40)
    )
    assert doc.size() == (96, 64) and doc.undo_stack.count() == 1


def test_rotate_and_flip_move_every_layer_and_undo(qtbot, window):
    doc = _open(window)
    doc.begin_stroke()
    doc.paint_segment(QPointF(4, 4), QPointF(4, 4), 4, False)
    doc.end_stroke()
    window.rotate_right_action.trigger()
    assert doc.size() == (64, 96)
    assert doc.image.pixelColor(63, 0) == QColor(0, 255, 0)  # the corner went clockwise
    assert doc.mask.pixelColor(59, 4).red() == 255 and doc.mask.pixelColor(4, 4).red() == 0
    window.flip_h_action.trigger()
    assert doc.image.pixelColor(0, 0) == QColor(0, 255, 0)
    window.flip_v_action.trigger()
    assert doc.image.pixelColor(0, 95) == QColor(0, 255, 0)
    for _ in range(3):
        doc.undo_stack.undo()
    assert doc.size() == (96, 64) and doc.image.pixelColor(0, 0) == QColor(0, 255, 0)
    assert doc.mask.pixelColor(4, 4).red() == 255


def test_resize_keeps_the_mask_binary_and_undoes(qtbot, window):
    doc = _open(window)
    doc.begin_stroke()
    doc.paint_segment(QPointF(20, 20), QPointF(40, 20), 10, False)
    doc.end_stroke()
    assert doc.resize(150, 100)
    assert doc.size() == (150, 100) and doc.mask.size() == doc.sketch.size()
    import numpy as np

    mask = doc.mask
    values = np.frombuffer(mask.constBits(), np.uint8, mask.sizeInBytes())
    assert set(np.unique(values)) <= {0, 255}
    doc.undo_stack.undo()
    assert doc.size() == (96, 64)


def test_resize_dialog_shows_the_model_size_rules(qtbot):
    sd = ResizeDialog(96, 64)
    qtbot.addWidget(sd)
    sd.width_box.setValue(100)
    assert sd.height_box.value() == 67  # aspect kept
    assert sd.chosen_size() == (104, 64)  # snapped to multiples of 8
    assert "multiple of 8" in sd.rule.text()
    sd.snap.setChecked(False)
    assert sd.chosen_size() == (100, 67)
    assert "work on 96 × 64" in sd.rule.text()
    native = ResizeDialog(128, 128, fixed_size=64)
    qtbot.addWidget(native)
    assert "makes 64 × 64 pictures" in native.rule.text()
    native.use_fixed.click()
    assert native.chosen_size() == (64, 64)


def test_resize_from_the_canvas_menu(qtbot, window):
    doc = _open(window)
    window.resize_action.trigger()
    dialog = window.findChild(ResizeDialog)
    assert "makes 64 × 64" in dialog.rule.text()  # the built-in model is the default
    dialog.use_fixed.click()
    dialog.accept()
    assert doc.size() == (64, 64)
    window.undo_action.trigger()
    assert doc.size() == (96, 64)


def test_sketch_layer_strokes_undo_and_hide(qtbot, window):
    doc = _open(window)
    canvas = window.canvas
    window.sketch_action.trigger()
    assert canvas.tool == SKETCH_PEN
    canvas.set_sketch_colour(QColor(0, 0, 0))
    canvas.set_brush_size(6)
    point = canvas.mapFromScene(QPointF(30, 30))
    qtbot.mousePress(canvas.viewport(), Qt.MouseButton.LeftButton, pos=point)
    qtbot.mouseMove(canvas.viewport(), point + QPoint(20, 0))
    qtbot.mouseRelease(canvas.viewport(), Qt.MouseButton.LeftButton, pos=point + QPoint(20, 0))
    assert doc.has_sketch() and not doc.has_mask()  # the mask is untouched
    assert doc.sketch.pixelColor(30, 30).alpha() == 255
    assert doc.undo_stack.undoText() == "Sketch"
    window.layer_actions["sketch"].setChecked(False)
    assert not canvas._sketch_item.isVisible() and doc.has_sketch()
    window.layer_actions["picture"].setChecked(False)
    assert not canvas._image_item.isVisible()
    window.layer_actions["picture"].setChecked(True)
    window.layer_actions["sketch"].setChecked(True)
    window.clear_sketch_action.trigger()
    assert not doc.has_sketch()
    doc.undo_stack.undo()
    doc.undo_stack.undo()
    assert not doc.has_sketch() and doc.size() == (96, 64)


def test_upscale_the_canvas_from_the_menu_with_a_factor(qtbot, window, fake):
    from engine.api import UpscaleRequest

    _open(window)
    dialog = window.upscale_canvas()
    dialog.factor.setCurrentIndex(dialog.factor.findData(4.0))
    assert dialog.result_size.text() == "96 × 64 → 384 × 256"
    dialog.accept()
    qtbot.waitUntil(lambda: not window.job.busy, timeout=5000)
    request = fake.requests[-1]
    assert isinstance(request, UpscaleRequest) and (request.model, request.scale) == ("", 4.0)
    menu_texts = [a.text() for m in window.menuBar().actions() for a in m.menu().actions()]
    assert "Upscale…" in menu_texts and "Crop" in menu_texts and "Resize canvas…" in menu_texts
