"""The canvas document: three layers (picture, mask, sketch) and the live preview, with undo.

- picture: the working image (ARGB32);
- mask: where inpaint may change the picture (Grayscale8, 0 or 255);
- sketch: colour strokes on a transparent layer (ARGB32), the control/sketch layer that guides
  a generation; empty until the user draws on it.

Every edit (new image, a stroke on the mask or the sketch, clear, invert, extend, crop, resize,
rotate, flip) is a QUndoCommand on one QUndoStack, so undo/redo is deep and uniform. Commands
keep full before/after copies of the layers they change: simple and exact (a 1024x1024 mask is
1 MB). Geometry edits change every layer together, so they always line up. The preview is
transient (not undoable): it is whatever the engine last sent while a job runs.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, QPointF, QRect, QSize, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPen, QTransform, QUndoCommand, QUndoStack

MASK_FORMAT = QImage.Format.Format_Grayscale8
LAYER_FORMAT = QImage.Format.Format_ARGB32
UNDO_LIMIT = 200
MASK, SKETCH = "mask", "sketch"
MAX_SIDE = 4096


def empty_mask(width: int, height: int) -> QImage:
    mask = QImage(width, height, MASK_FORMAT)
    mask.fill(0)
    return mask


def empty_sketch(width: int, height: int) -> QImage:
    sketch = QImage(width, height, LAYER_FORMAT)
    sketch.fill(Qt.GlobalColor.transparent)
    return sketch


def _is_blank(image: QImage | None, alpha: bool = False) -> bool:
    if image is None or image.isNull():
        return True
    import numpy as np

    data = np.frombuffer(image.constBits(), dtype=np.uint8, count=image.sizeInBytes())
    return not (data[3::4] if alpha else data).any()  # ARGB32 in memory: B, G, R, A


def mask_is_empty(mask: QImage | None) -> bool:
    return _is_blank(mask)


class CanvasDocument(QObject):
    image_changed = Signal()
    mask_changed = Signal(QRect)  # the area that changed (whole image: a null QRect)
    sketch_changed = Signal()
    preview_changed = Signal()

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.undo_stack = QUndoStack(self)
        self.undo_stack.setUndoLimit(UNDO_LIMIT)
        self._image: QImage | None = None
        self._mask: QImage | None = None
        self._sketch: QImage | None = None
        self._preview: QImage | None = None
        self._stroke_layer: str | None = None
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
    def sketch(self) -> QImage | None:
        return self._sketch

    @property
    def preview(self) -> QImage | None:
        return self._preview

    def has_image(self) -> bool:
        return self._image is not None

    def has_mask(self) -> bool:
        return not mask_is_empty(self._mask)

    def has_sketch(self) -> bool:
        return not _is_blank(self._sketch, alpha=True)

    def size(self) -> tuple[int, int]:
        return (self._image.width(), self._image.height()) if self._image else (0, 0)

    # -- edits (each one undoable) ----------------------------------------------------------
    def set_image(self, image: QImage, text: str = "Set image", *, keep_mask: bool = False) -> None:
        """Replace the working image. The mask starts empty at the new size, unless `keep_mask`
        and the size is unchanged (an inpaint result: the user may want to redo the same area).
        The sketch is kept at an unchanged size (it guides the next picture too)."""
        image = image.convertToFormat(LAYER_FORMAT)
        same_size = self._mask is not None and self._mask.size() == image.size()
        if keep_mask and same_size:
            mask = QImage(self._mask)
        else:
            mask = empty_mask(image.width(), image.height())
        if self._sketch is not None and self._sketch.size() == image.size():
            sketch = self._sketch
        else:
            sketch = empty_sketch(image.width(), image.height())
        self.undo_stack.push(_ReplaceCommand(self, text, image, mask, sketch))

    def clear_mask(self) -> None:
        if self._image is None or not self.has_mask():
            return
        self._push_layer(MASK, "Clear mask", empty_mask(*self.size()))

    def invert_mask(self) -> None:
        if self._mask is None:
            return
        inverted = QImage(self._mask)
        inverted.invertPixels()
        self._push_layer(MASK, "Invert mask", inverted)

    def clear_sketch(self) -> None:
        if self._image is None or not self.has_sketch():
            return
        self._push_layer(SKETCH, "Clear sketch", empty_sketch(*self.size()))

    def extend(self, left: int, top: int, right: int, bottom: int) -> None:
        """Grow the canvas (outpaint): old content keeps its place, the new area is masked."""
        if self._image is None:
            return
        width, height = self.size()
        new_w, new_h = width + left + right, height + top + bottom
        image = QImage(new_w, new_h, LAYER_FORMAT)
        image.fill(QColor(127, 127, 127))
        _draw(image, self._image, left, top)
        mask = QImage(new_w, new_h, MASK_FORMAT)
        mask.fill(255)
        _draw(mask, self._mask or empty_mask(width, height), left, top)
        sketch = empty_sketch(new_w, new_h)
        _draw(sketch, self._sketch or empty_sketch(width, height), left, top)
        self.undo_stack.push(_ReplaceCommand(self, "Extend canvas", image, mask, sketch))

    # -- geometry: every layer together ---------------------------------------------------------
    def crop(self, rect: QRect) -> bool:
        """Keep only `rect` (clipped to the picture). False if nothing would be left."""
        if self._image is None:
            return False
        rect = QRect(rect).normalized().intersected(self._image.rect())
        if rect.width() < 1 or rect.height() < 1 or rect == self._image.rect():
            return False
        layers = [layer.copy(rect) for layer in self._layers()]
        self.undo_stack.push(_ReplaceCommand(self, "Crop", *layers))
        return True

    def resize(self, width: int, height: int) -> bool:
        """Scale every layer to width x height: the picture and sketch smoothly, the mask by
        nearest neighbour so it stays a clean 0/255 mask."""
        if self._image is None or (width, height) == self.size():
            return False
        if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
            raise ValueError(f"size {width}x{height}")
        size, smooth = QSize(width, height), Qt.TransformationMode.SmoothTransformation
        ignore = Qt.AspectRatioMode.IgnoreAspectRatio
        image = self._image.scaled(size, ignore, smooth)
        mask = self._mask.scaled(size, ignore, Qt.TransformationMode.FastTransformation)
        sketch = self._sketch.scaled(size, ignore, smooth)
        self.undo_stack.push(
            _ReplaceCommand(self, f"Resize to {width}×{height}", image, mask, sketch)
        )
        return True

    def rotate(self, degrees: int) -> None:
        """Rotate by a multiple of 90 degrees (clockwise), losslessly."""
        if self._image is None or degrees % 90 or not degrees % 360:
            return
        turn = QTransform().rotate(degrees % 360)
        layers = [layer.transformed(turn) for layer in self._layers()]
        self.undo_stack.push(_ReplaceCommand(self, f"Rotate {degrees % 360}°", *layers))

    def flip(self, horizontal: bool = True) -> None:
        if self._image is None:
            return
        axis = Qt.Orientation.Horizontal if horizontal else Qt.Orientation.Vertical
        layers = [layer.flipped(axis) for layer in self._layers()]
        text = "Flip horizontally" if horizontal else "Flip vertically"
        self.undo_stack.push(_ReplaceCommand(self, text, *layers))

    def _layers(self) -> list[QImage]:
        width, height = self.size()
        return [
            self._image,
            self._mask if self._mask is not None else empty_mask(width, height),
            self._sketch if self._sketch is not None else empty_sketch(width, height),
        ]

    # -- painting the mask or the sketch: begin, segments, end = one undo step ----------------
    def begin_stroke(self, layer: str = MASK) -> None:
        target = self._layer(layer)
        if target is not None:
            self._stroke_layer = layer
            self._stroke_before = QImage(target)

    def paint_segment(
        self, start: QPointF, end: QPointF, diameter: float, erase: bool, colour: QColor = None
    ) -> None:
        target = self._layer(self._stroke_layer) if self._stroke_layer else None
        if target is None or self._stroke_before is None:
            return
        painter = QPainter(target)
        if self._stroke_layer == MASK:
            # no antialiasing: a binary mask, and erasing along a stroke removes it completely
            pen_colour = QColor(0, 0, 0) if erase else QColor(255, 255, 255)
        else:
            painter.setRenderHint(QPainter.RenderHint.Antialiasing)
            if erase:
                painter.setCompositionMode(QPainter.CompositionMode.CompositionMode_Clear)
            pen_colour = colour or QColor(255, 255, 255)
        if start == end:  # a click: a dot (a zero-length line draws nothing)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(pen_colour)
            painter.drawEllipse(start, diameter / 2, diameter / 2)
        else:
            pen = QPen(pen_colour, diameter)
            pen.setCapStyle(Qt.PenCapStyle.RoundCap)
            painter.setPen(pen)
            painter.drawLine(start, end)
        painter.end()
        if self._stroke_layer == SKETCH:
            self.sketch_changed.emit()
            return
        radius = int(diameter / 2) + 2
        area = QRect(start.toPoint(), end.toPoint()).normalized()
        self.mask_changed.emit(area.adjusted(-radius, -radius, radius, radius))

    def end_stroke(self, text: str = "Paint mask") -> None:
        layer, self._stroke_layer = self._stroke_layer, None
        before, self._stroke_before = self._stroke_before, None
        target = self._layer(layer) if layer else None
        if before is None or target is None or before == target:
            return
        self.undo_stack.push(_LayerCommand(self, layer, text, before, QImage(target), True))

    # -- preview (not undoable) -------------------------------------------------------------
    def set_preview(self, image: QImage | None) -> None:
        self._preview = image
        self.preview_changed.emit()

    # -- internals used by the commands ------------------------------------------------------
    def _layer(self, name: str) -> QImage | None:
        return self._mask if name == MASK else self._sketch

    def _push_layer(self, layer: str, text: str, after: QImage) -> None:
        self.undo_stack.push(_LayerCommand(self, layer, text, QImage(self._layer(layer)), after))

    def _set_layer(self, layer: str, image: QImage) -> None:
        self.picture_replaced = False
        if layer == MASK:
            self._mask = image
            self.mask_changed.emit(QRect())
        else:
            self._sketch = image
            self.sketch_changed.emit()

    def _apply(self, image: QImage | None, mask: QImage | None, sketch: QImage | None) -> None:
        image_changed = image is not self._image
        self.picture_replaced = image_changed
        self._image, self._mask, self._sketch = image, mask, sketch
        if image_changed:
            self.image_changed.emit()
        self.mask_changed.emit(QRect())
        self.sketch_changed.emit()


def _draw(target: QImage, source: QImage, x: int, y: int) -> None:
    painter = QPainter(target)
    painter.drawImage(x, y, source)
    painter.end()


class _ReplaceCommand(QUndoCommand):
    def __init__(self, doc: CanvasDocument, text: str, image, mask, sketch):
        super().__init__(text)
        self._doc = doc
        self._before = (doc.image, doc.mask, doc.sketch)
        self._after = (image, mask, sketch)

    def redo(self) -> None:
        self._doc._apply(*self._after)

    def undo(self) -> None:
        self._doc._apply(*self._before)


class _LayerCommand(QUndoCommand):
    """A change to the mask or the sketch only (a stroke, clear, invert)."""

    def __init__(self, doc, layer: str, text: str, before: QImage, after: QImage, applied=False):
        super().__init__(text)
        self._doc, self._layer = doc, layer
        self._before, self._after = before, after
        self._skip_first_redo = applied  # a stroke is already painted when it is pushed

    def redo(self) -> None:
        if self._skip_first_redo:
            self._skip_first_redo = False
            self._doc.picture_replaced = False
            return
        self._doc._set_layer(self._layer, QImage(self._after))

    def undo(self) -> None:
        self._doc._set_layer(self._layer, QImage(self._before))
