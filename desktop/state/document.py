"""The canvas document: the working image, its mask and the live preview, with undo.

Every edit (new image, mask stroke, clear, invert, extend canvas) is a QUndoCommand on one
QUndoStack, so undo/redo is deep and uniform. Commands keep full before/after copies of the
image or mask: simple and exact, and a 1024x1024 8-bit mask is only 1 MB. The preview is
transient (not undoable): it is whatever the engine last sent while a job runs.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, QPointF, QRect, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPen, QUndoCommand, QUndoStack

MASK_FORMAT = QImage.Format.Format_Grayscale8
UNDO_LIMIT = 200


def empty_mask(width: int, height: int) -> QImage:
    mask = QImage(width, height, MASK_FORMAT)
    mask.fill(0)
    return mask


def mask_is_empty(mask: QImage | None) -> bool:
    if mask is None or mask.isNull():
        return True
    import numpy as np

    data = np.frombuffer(mask.constBits(), dtype=np.uint8, count=mask.sizeInBytes())
    return not data.any()


class CanvasDocument(QObject):
    image_changed = Signal()
    mask_changed = Signal(QRect)  # the area that changed (whole image: a null QRect)
    preview_changed = Signal()

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.undo_stack = QUndoStack(self)
        self.undo_stack.setUndoLimit(UNDO_LIMIT)
        self._image: QImage | None = None
        self._mask: QImage | None = None
        self._preview: QImage | None = None
        self._stroke_before: QImage | None = None
        #: whether the last edit (or undo/redo) replaced the picture, not only the mask: the
        #: Mode box follows mask edits, never a new picture (see ImageActions._follow_mask)
        self.picture_replaced = False

    # -- reading ----------------------------------------------------------------------------
    @property
    def image(self) -> QImage | None:
        return self._image

    @property
    def mask(self) -> QImage | None:
        return self._mask

    @property
    def preview(self) -> QImage | None:
        return self._preview

    def has_image(self) -> bool:
        return self._image is not None

    def has_mask(self) -> bool:
        return not mask_is_empty(self._mask)

    def size(self) -> tuple[int, int]:
        return (self._image.width(), self._image.height()) if self._image else (0, 0)

    # -- edits (each one undoable) ----------------------------------------------------------
    def set_image(self, image: QImage, text: str = "Set image", *, keep_mask: bool = False) -> None:
        """Replace the working image. The mask starts empty at the new size, unless `keep_mask`
        and the size is unchanged (an inpaint result: the user may want to redo the same area)."""
        image = image.convertToFormat(QImage.Format.Format_ARGB32)
        same_size = self._mask is not None and self._mask.size() == image.size()
        if keep_mask and same_size:
            mask = QImage(self._mask)
        else:
            mask = empty_mask(image.width(), image.height())
        self.undo_stack.push(_ReplaceCommand(self, text, image, mask))

    def clear_mask(self) -> None:
        if self._image is None or not self.has_mask():
            return
        self._push_mask("Clear mask", empty_mask(*self.size()))

    def invert_mask(self) -> None:
        if self._mask is None:
            return
        inverted = QImage(self._mask)
        inverted.invertPixels()
        self._push_mask("Invert mask", inverted)

    def extend(self, left: int, top: int, right: int, bottom: int) -> None:
        """Grow the canvas (outpaint): old content keeps its place, the new area is masked."""
        if self._image is None:
            return
        width, height = self.size()
        new_w, new_h = width + left + right, height + top + bottom
        image = QImage(new_w, new_h, QImage.Format.Format_ARGB32)
        image.fill(QColor(127, 127, 127))
        painter = QPainter(image)
        painter.drawImage(left, top, self._image)
        painter.end()
        mask = QImage(new_w, new_h, MASK_FORMAT)
        mask.fill(255)
        painter = QPainter(mask)
        painter.drawImage(left, top, self._mask or empty_mask(width, height))
        painter.end()
        self.undo_stack.push(_ReplaceCommand(self, "Extend canvas", image, mask))

    # -- painting the mask: begin, segments, end = one undo step ------------------------------
    def begin_stroke(self) -> None:
        if self._mask is not None:
            self._stroke_before = QImage(self._mask)

    def paint_segment(self, start: QPointF, end: QPointF, diameter: float, erase: bool) -> None:
        if self._mask is None or self._stroke_before is None:
            return
        # no antialiasing: a binary mask, and erasing along a stroke removes it completely
        painter = QPainter(self._mask)
        pen = QPen(QColor(0, 0, 0) if erase else QColor(255, 255, 255), diameter)
        pen.setCapStyle(Qt.PenCapStyle.RoundCap)
        painter.setPen(pen)
        painter.drawLine(start, end)
        painter.end()
        radius = int(diameter / 2) + 2
        area = QRect(start.toPoint(), end.toPoint()).normalized()
        self.mask_changed.emit(area.adjusted(-radius, -radius, radius, radius))

    def end_stroke(self, text: str = "Paint mask") -> None:
        before, self._stroke_before = self._stroke_before, None
        if before is None or self._mask is None or before == self._mask:
            return
        self.undo_stack.push(_MaskCommand(self, text, before, QImage(self._mask), applied=True))

    # -- preview (not undoable) -------------------------------------------------------------
    def set_preview(self, image: QImage | None) -> None:
        self._preview = image
        self.preview_changed.emit()

    # -- internals used by the commands ------------------------------------------------------
    def _push_mask(self, text: str, mask: QImage) -> None:
        self.undo_stack.push(_MaskCommand(self, text, QImage(self._mask), mask))

    def _apply(self, image: QImage | None, mask: QImage | None) -> None:
        image_changed = image is not self._image
        self.picture_replaced = image_changed
        self._image, self._mask = image, mask
        if image_changed:
            self.image_changed.emit()
        self.mask_changed.emit(QRect())


class _ReplaceCommand(QUndoCommand):
    def __init__(self, doc: CanvasDocument, text: str, image: QImage, mask: QImage):
        super().__init__(text)
        self._doc = doc
        self._before = (doc.image, doc.mask)
        self._after = (image, mask)

    def redo(self) -> None:
        self._doc._apply(*self._after)

    def undo(self) -> None:
        self._doc._apply(*self._before)


class _MaskCommand(QUndoCommand):
    def __init__(
        self, doc: CanvasDocument, text: str, before: QImage, after: QImage, applied=False
    ):
        super().__init__(text)
        self._doc = doc
        self._before, self._after = before, after
        self._skip_first_redo = applied  # a stroke is already painted when it is pushed

    def redo(self) -> None:
        if self._skip_first_redo:
            self._skip_first_redo = False
            return
        self._doc._apply(self._doc.image, QImage(self._after))

    def undo(self) -> None:
        self._doc._apply(self._doc.image, QImage(self._before))
