"""The canvas: a QGraphicsView showing the document's picture, the sketch layer, the mask as a
translucent overlay and the live preview while a job runs.

Tools: brush and eraser paint the mask (left button), sketch and sketch eraser draw on the
sketch layer, crop drags the rectangle to keep (released: cropped, one undo step; Esc while
dragging cancels); the middle button or Space+drag pans, the wheel zooms around the cursor.
Each layer (picture, sketch, mask) can be hidden. Dropped files and image data are handed to
the main window through `files_dropped` / `image_dropped`, which checks them before the
document changes.
"""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRect, QRectF, Qt, Signal
from PySide6.QtGui import (
    QBrush,
    QColor,
    QImage,
    QPainter,
    QPen,
    QPixmap,
)
from PySide6.QtWidgets import QGraphicsPixmapItem, QGraphicsScene, QGraphicsView

from desktop.state.document import MASK, SKETCH, CanvasDocument

BRUSH, ERASER = "brush", "eraser"
SKETCH_PEN, SKETCH_ERASER, CROP = "sketch", "sketch-eraser", "crop"
#: tool -> (layer it paints, whether it erases)
PAINT_TOOLS = {
    BRUSH: (MASK, False),
    ERASER: (MASK, True),
    SKETCH_PEN: (SKETCH, False),
    SKETCH_ERASER: (SKETCH, True),
}
LAYERS = ("picture", SKETCH, MASK)
MASK_COLOUR = QColor(255, 60, 90)
MASK_OPACITY = 0.45
MIN_ZOOM, MAX_ZOOM = 0.05, 32.0
#: free space kept around a fitted picture, in screen pixels (not scene pixels, so a 8 px
#: latent preview and the 64 px picture it becomes fit to the same on-screen size)
FIT_MARGIN_PX = 16


def _same_shape(a: QImage, b: QImage) -> bool:
    """Same aspect ratio (within a pixel of rounding), so one can be scaled over the other."""
    return abs(a.width() * b.height() - a.height() * b.width()) <= max(a.width(), a.height())


def mask_overlay(mask: QImage) -> QImage:
    """The mask as a coloured image whose alpha is the mask (drawn at MASK_OPACITY)."""
    overlay = QImage(mask.size(), QImage.Format.Format_ARGB32_Premultiplied)
    overlay.fill(MASK_COLOUR)
    overlay.setAlphaChannel(mask)
    return overlay


class CanvasView(QGraphicsView):
    files_dropped = Signal(list)  # list[QUrl]
    image_dropped = Signal(QImage)
    brush_size_changed = Signal(int)
    tool_changed = Signal(str)
    zoom_changed = Signal(float)

    def __init__(self, document: CanvasDocument, parent=None):
        super().__init__(parent)
        self.document = document
        self.setScene(QGraphicsScene(self))
        self.setAcceptDrops(True)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        self.setBackgroundBrush(QBrush(QColor(38, 40, 44)))
        self.setFrameShape(QGraphicsView.Shape.NoFrame)
        # panning is middle button or Space+drag; scroll bars would only crowd the picture
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setMouseTracking(True)
        self._image_item = QGraphicsPixmapItem()
        self._sketch_item = QGraphicsPixmapItem()
        self._mask_item = QGraphicsPixmapItem()
        self._mask_item.setOpacity(MASK_OPACITY)
        self._preview_item = QGraphicsPixmapItem()
        items = (self._image_item, self._sketch_item, self._mask_item, self._preview_item)
        for z, item in enumerate(items):
            item.setZValue(z)
            item.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
            self.scene().addItem(item)
        self.tool = BRUSH
        self.brush_size = 40
        self.sketch_colour = QColor(255, 255, 255)
        self.mask_visible = True
        self.layer_visible = dict.fromkeys(LAYERS, True)
        self._crop_from: QPointF | None = None
        self._crop_to: QPointF | None = None
        self._last_point: QPointF | None = None
        self._panning_from: QPointF | None = None
        self._space_held = False
        self._cursor_pos: QPointF | None = None
        #: tools that paint layers the document does not own (region masks): tool name ->
        #: an object with begin_stroke(tool) -> bool, paint_segment(start, end, diameter, erase),
        #: end_stroke(erase) (desktop/widgets/canvas_regions.py)
        self.extra_tools: dict[str, tuple[object, bool]] = {}
        document.image_changed.connect(self._image_changed)
        document.mask_changed.connect(self._mask_changed)
        document.sketch_changed.connect(self._sketch_changed)
        document.preview_changed.connect(self._preview_changed)
        self._image_changed()

    # -- tools ------------------------------------------------------------------------------
    def set_tool(self, tool: str) -> None:
        self.tool = tool
        self.tool_changed.emit(tool)
        self.viewport().update()

    def set_brush_size(self, size: int) -> None:
        size = max(1, min(500, int(size)))
        if size != self.brush_size:
            self.brush_size = size
            self.brush_size_changed.emit(size)
            self.viewport().update()

    def set_mask_visible(self, visible: bool) -> None:
        self.set_layer_visible(MASK, visible)

    def set_layer_visible(self, layer: str, visible: bool) -> None:
        """Show or hide a layer (hiding changes nothing in the document)."""
        self.layer_visible[layer] = visible
        self.mask_visible = self.layer_visible[MASK]
        self._show_document(self.document.preview is None or self._image_item.isVisible())

    def set_sketch_colour(self, colour: QColor) -> None:
        self.sketch_colour = QColor(colour)

    # -- zoom -------------------------------------------------------------------------------
    @property
    def zoom(self) -> float:
        return self.transform().m11()

    def set_zoom(self, factor: float) -> None:
        factor = max(MIN_ZOOM, min(MAX_ZOOM, factor))
        self.resetTransform()
        self.scale(factor, factor)
        self.zoom_changed.emit(factor)

    def zoom_by(self, factor: float) -> None:
        self.set_zoom(self.zoom * factor)

    def fit(self) -> None:
        if self.document.has_image():
            self._fit_rect(self._image_item.sceneBoundingRect())

    def _fit_rect(self, rect: QRectF) -> None:
        """Zoom so `rect` fills the view less a fixed screen margin, and centre it."""
        if rect.isEmpty():
            return
        view = self.viewport().rect()
        room_w = max(1, view.width() - 2 * FIT_MARGIN_PX)
        room_h = max(1, view.height() - 2 * FIT_MARGIN_PX)
        self.set_zoom(min(room_w / rect.width(), room_h / rect.height()))
        self.centerOn(rect.center())

    def actual_size(self) -> None:
        self.set_zoom(1.0)

    # -- document -> items --------------------------------------------------------------------
    def _image_changed(self) -> None:
        """A picture of a new size (a result, an upscale, a crop) is fitted to the view, the
        same way every time; an edit at the same size keeps the zoom and position."""
        image = self.document.image
        old_size = self._image_item.pixmap().size()
        self._image_item.setPixmap(QPixmap.fromImage(image) if image else QPixmap())
        if image is not None:
            self.scene().setSceneRect(QRectF(image.rect()).adjusted(-2000, -2000, 2000, 2000))
            if old_size.isEmpty() or old_size != image.size():
                self.fit()
        self.viewport().update()

    def _mask_changed(self, _area: QRect = QRect()) -> None:
        mask = self.document.mask
        if mask is None:
            self._mask_item.setPixmap(QPixmap())
            return
        self._mask_item.setPixmap(QPixmap.fromImage(mask_overlay(mask)))

    def _sketch_changed(self) -> None:
        sketch = self.document.sketch
        self._sketch_item.setPixmap(QPixmap.fromImage(sketch) if sketch else QPixmap())

    def _preview_changed(self) -> None:
        preview = self.document.preview
        if preview is None:
            self._preview_item.setPixmap(QPixmap())
            self._show_document(True)
            return
        first = self._preview_item.pixmap().isNull()
        self._preview_item.setPixmap(QPixmap.fromImage(preview))
        target = self.document.image
        if target is not None and _same_shape(preview, target):
            # an edit of the working image (often at latent resolution): lay it over the image
            self._preview_item.setScale(target.width() / max(1, preview.width()))
            return
        # a new picture of another shape: show it alone, framed, until the job ends
        self._preview_item.setScale(1.0)
        self._show_document(False)
        if first:
            self.scene().setSceneRect(
                self._preview_item.sceneBoundingRect().adjusted(-2000, -2000, 2000, 2000)
            )
            self._fit_rect(self._preview_item.sceneBoundingRect())

    def _show_document(self, visible: bool) -> None:
        self._image_item.setVisible(visible and self.layer_visible["picture"])
        self._sketch_item.setVisible(visible and self.layer_visible[SKETCH])
        self._mask_item.setVisible(visible and self.layer_visible[MASK])

    # -- mouse: paint, pan, zoom ------------------------------------------------------------
    def wheelEvent(self, event) -> None:  # noqa: N802 - Qt override
        steps = event.angleDelta().y() / 120
        if steps:
            self.zoom_by(1.15**steps)

    def mousePressEvent(self, event) -> None:  # noqa: N802
        if event.button() == Qt.MouseButton.MiddleButton or (
            event.button() == Qt.MouseButton.LeftButton and self._space_held
        ):
            self._panning_from = event.position()
            self.setCursor(Qt.CursorShape.ClosedHandCursor)
            return
        if event.button() == Qt.MouseButton.LeftButton and self.document.has_image():
            point = self.mapToScene(event.position().toPoint())
            if self.tool == CROP:
                self._crop_from = self._crop_to = point
                self.viewport().update()
                return
            if self.tool in self.extra_tools:
                if not self.extra_tools[self.tool][0].begin_stroke(self.tool):
                    return
            else:
                self.document.begin_stroke(PAINT_TOOLS[self.tool][0])
            self._last_point = point
            self._paint(point, point)
            return
        super().mousePressEvent(event)

    def _paint(self, start: QPointF, end: QPointF) -> None:
        if self.tool in self.extra_tools:
            target, erase = self.extra_tools[self.tool]
            target.paint_segment(start, end, self.brush_size, erase)
            return
        _layer, erase = PAINT_TOOLS[self.tool]
        self.document.paint_segment(start, end, self.brush_size, erase, self.sketch_colour)

    def crop_rect(self) -> QRect | None:
        """The rectangle being dragged with the crop tool, in picture pixels."""
        if self._crop_from is None or self._crop_to is None:
            return None
        return QRect(self._crop_from.toPoint(), self._crop_to.toPoint()).normalized()

    def mouseMoveEvent(self, event) -> None:  # noqa: N802
        self._cursor_pos = event.position()
        if self._panning_from is not None:
            delta = event.position() - self._panning_from
            self._panning_from = event.position()
            self.horizontalScrollBar().setValue(self.horizontalScrollBar().value() - delta.x())
            self.verticalScrollBar().setValue(self.verticalScrollBar().value() - delta.y())
            return
        if self._crop_from is not None:
            self._crop_to = self.mapToScene(event.position().toPoint())
        elif self._last_point is not None:
            point = self.mapToScene(event.position().toPoint())
            self._paint(self._last_point, point)
            self._last_point = point
        self.viewport().update()

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802
        if self._panning_from is not None:
            self._panning_from = None
            self.unsetCursor()
            return
        if self._crop_from is not None:
            rect = self.crop_rect()
            self._crop_from = self._crop_to = None
            self.viewport().update()
            if rect is not None and rect.width() >= 2 and rect.height() >= 2:
                self.document.crop(rect)
            return
        if self._last_point is not None:
            self._last_point = None
            if self.tool in self.extra_tools:
                target, erase = self.extra_tools[self.tool]
                target.end_stroke(erase)
                return
            names = {BRUSH: "Paint mask", ERASER: "Erase mask", SKETCH_PEN: "Sketch"}
            self.document.end_stroke(names.get(self.tool, "Erase sketch"))
            return
        super().mouseReleaseEvent(event)

    def keyPressEvent(self, event) -> None:  # noqa: N802
        if event.key() == Qt.Key.Key_Escape and self._crop_from is not None:
            self._crop_from = self._crop_to = None  # a crop being dragged is dropped
            self.viewport().update()
            return
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space_held = True
            self.setCursor(Qt.CursorShape.OpenHandCursor)
            return
        super().keyPressEvent(event)

    def keyReleaseEvent(self, event) -> None:  # noqa: N802
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space_held = False
            self.unsetCursor()
            return
        super().keyReleaseEvent(event)

    def leaveEvent(self, event) -> None:  # noqa: N802
        self._cursor_pos = None
        self.viewport().update()
        super().leaveEvent(event)

    # -- drawing: brush outline and the empty-canvas hint -----------------------------------
    def drawForeground(self, painter: QPainter, rect: QRectF) -> None:  # noqa: N802
        super().drawForeground(painter, rect)
        if not self.document.has_image() and self.document.preview is None:
            self._draw_hint(painter)
            return
        crop = self.crop_rect()
        if crop is not None:
            self._draw_crop(painter, crop)
            return
        if self.tool == CROP:
            return
        if self._cursor_pos is not None and self._panning_from is None:
            centre = self.mapToScene(self._cursor_pos.toPoint())
            radius = self.brush_size / 2
            painter.setPen(QPen(QColor(255, 255, 255, 200), 0))
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawEllipse(centre, radius, radius)

    def _draw_crop(self, painter: QPainter, crop: QRect) -> None:
        """Darken what the crop drops, outline what it keeps and name its size."""
        whole = QRectF(self._image_item.sceneBoundingRect())
        kept = QRectF(crop).intersected(whole)
        shade = QColor(0, 0, 0, 140)
        for part in (
            QRectF(whole.left(), whole.top(), whole.width(), kept.top() - whole.top()),
            QRectF(whole.left(), kept.bottom(), whole.width(), whole.bottom() - kept.bottom()),
            QRectF(whole.left(), kept.top(), kept.left() - whole.left(), kept.height()),
            QRectF(kept.right(), kept.top(), whole.right() - kept.right(), kept.height()),
        ):
            painter.fillRect(part, shade)
        painter.setPen(QPen(QColor(255, 255, 255), 0, Qt.PenStyle.DashLine))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawRect(kept)
        painter.save()
        painter.resetTransform()
        corner = self.mapFromScene(kept.topLeft())
        painter.setPen(QColor(255, 255, 255))
        painter.drawText(
            corner.x() + 4, corner.y() - 6, f"{int(kept.width())} × {int(kept.height())}"
        )
        painter.restore()

    def _draw_hint(self, painter: QPainter) -> None:
        painter.save()
        painter.resetTransform()
        painter.setPen(QColor(170, 174, 182))
        font = painter.font()
        font.setPointSizeF(font.pointSizeF() * 1.25)
        painter.setFont(font)
        painter.drawText(
            self.viewport().rect(),
            Qt.AlignmentFlag.AlignCenter,
            "Type a prompt and press Ctrl+Enter\nor drop an image here to edit it",
        )
        painter.restore()

    # -- drag and drop ----------------------------------------------------------------------
    def dragEnterEvent(self, event) -> None:  # noqa: N802
        if event.mimeData().hasUrls() or event.mimeData().hasImage():
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:  # noqa: N802
        self.dragEnterEvent(event)

    def dropEvent(self, event) -> None:  # noqa: N802
        mime = event.mimeData()
        if mime.hasUrls():
            self.files_dropped.emit(list(mime.urls()))
        elif mime.hasImage():
            self.image_dropped.emit(QImage(mime.imageData()))
        event.acceptProposedAction()
