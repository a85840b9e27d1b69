"""The canvas document: every edit is one undo step, and undo/redo restores exactly."""

from __future__ import annotations

from PySide6.QtCore import QPointF
from PySide6.QtGui import QColor, QImage

from desktop.state.document import CanvasDocument


def _image(w=64, h=48, colour="red"):
    image = QImage(w, h, QImage.Format.Format_ARGB32)
    image.fill(QColor(colour))
    return image


def _paint(doc, a=(10, 10), b=(30, 10), size=8, erase=False):
    doc.begin_stroke()
    doc.paint_segment(QPointF(*a), QPointF(*b), size, erase)
    doc.end_stroke()


def test_strokes_clear_invert_and_deep_undo(qapp):
    doc = CanvasDocument()
    doc.set_image(_image())
    assert not doc.has_mask()
    _paint(doc)
    assert doc.has_mask() and doc.mask.pixelColor(20, 10).red() == 255
    _paint(doc, erase=True)
    assert not doc.has_mask()
    doc.undo_stack.undo()
    assert doc.has_mask()
    doc.invert_mask()
    assert doc.mask.pixelColor(20, 10).red() == 0 and doc.mask.pixelColor(50, 40).red() == 255
    doc.clear_mask()
    assert not doc.has_mask()
    for _ in range(3):
        doc.undo_stack.undo()
    assert doc.has_image() and not doc.has_mask()  # back to the fresh image
    doc.undo_stack.undo()
    assert not doc.has_image()
    for _ in range(4):
        doc.undo_stack.redo()
    assert doc.has_image() and not doc.has_mask()  # cleared again, as before the undos


def test_extend_masks_new_area_and_keeps_old_pixels(qapp):
    doc = CanvasDocument()
    doc.set_image(_image(64, 48, "blue"))
    doc.extend(0, 0, 32, 0)  # right
    assert doc.size() == (96, 48)
    assert doc.image.pixelColor(10, 10) == QColor("blue")
    assert doc.mask.pixelColor(10, 10).red() == 0
    assert doc.mask.pixelColor(80, 10).red() == 255
    doc.undo_stack.undo()
    assert doc.size() == (64, 48)


def test_set_image_can_keep_mask_of_same_size(qapp):
    doc = CanvasDocument()
    doc.set_image(_image())
    _paint(doc)
    doc.set_image(_image(colour="green"), keep_mask=True)
    assert doc.has_mask()
    doc.set_image(_image(32, 32), keep_mask=True)
    assert not doc.has_mask()
