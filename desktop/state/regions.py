"""Regional prompts: coloured mask layers over the canvas, each with its own prompt and weight.

Each region is a Grayscale8 mask (0 or 255) at the picture's size, painted with the region
brush on the canvas; a stroke is one undo step on the document's undo stack, like a mask
stroke. A region's colour is picked automatically (the first palette colour no other region
uses) so neighbouring regions read apart. When the picture changes size (a new result, a
resize) the masks are scaled with it by nearest neighbour, so they stay clean masks.

QtCore/QtGui only: the control state turns the masks into `Region`s when Generate is pressed.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from PySide6.QtCore import QObject, QPointF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPen, QUndoCommand

from desktop.state.document import CanvasDocument, empty_mask, mask_is_empty
from engine.api_control import MAX_REGIONS

#: distinct colours a user tells apart over most pictures (shown translucent)
REGION_PALETTE = (
    QColor(80, 160, 255),
    QColor(255, 170, 50),
    QColor(110, 220, 120),
    QColor(230, 90, 220),
    QColor(250, 230, 70),
    QColor(70, 220, 220),
    QColor(240, 100, 90),
    QColor(170, 130, 255),
)
DEFAULT_WEIGHT = 1.0


@dataclass
class RegionLayer:
    id: int
    prompt: str
    weight: float
    colour: QColor
    mask: QImage

    def is_empty(self) -> bool:
        return mask_is_empty(self.mask)


class RegionLayers(QObject):
    """The list of regions. `changed`: a region was added, removed, renamed or reweighted;
    `mask_changed(id)`: its mask was painted (or undone)."""

    changed = Signal()
    mask_changed = Signal(int)
    active_changed = Signal(int)

    def __init__(self, document: CanvasDocument, parent: QObject | None = None):
        super().__init__(parent)
        self.document = document
        self.regions: list[RegionLayer] = []
        self.active_id: int = -1
        self._ids = itertools.count(1)
        self._stroke: tuple[RegionLayer, QImage] | None = None
        document.image_changed.connect(self._follow_picture_size)

    # -- the list -------------------------------------------------------------------------------
    def add(self, prompt: str = "", weight: float = DEFAULT_WEIGHT, mask: QImage | None = None):
        """A new region (the active one from now on), or None when MAX_REGIONS exist."""
        if len(self.regions) >= MAX_REGIONS:
            return None
        size = self._size()
        if mask is None or mask.isNull():
            mask = empty_mask(size.width(), size.height())
        else:
            mask = _as_mask(mask, size)
        region = RegionLayer(next(self._ids), prompt, float(weight), self._free_colour(), mask)
        self.regions.append(region)
        self.changed.emit()
        self.set_active(region.id)
        return region

    def remove(self, region_id: int) -> None:
        self.regions = [r for r in self.regions if r.id != region_id]
        if self.active_id == region_id:
            self.set_active(self.regions[-1].id if self.regions else -1)
        self.changed.emit()

    def clear(self) -> None:
        self.regions = []
        self.set_active(-1)
        self.changed.emit()

    def find(self, region_id: int) -> RegionLayer | None:
        return next((r for r in self.regions if r.id == region_id), None)

    def set_prompt(self, region_id: int, prompt: str) -> None:
        region = self.find(region_id)
        if region is not None and region.prompt != prompt:
            region.prompt = prompt
            self.changed.emit()

    def set_weight(self, region_id: int, weight: float) -> None:
        region = self.find(region_id)
        if region is not None and region.weight != float(weight):
            region.weight = float(weight)
            self.changed.emit()

    def set_active(self, region_id: int) -> None:
        if region_id != self.active_id:
            self.active_id = region_id
            self.active_changed.emit(region_id)

    def active(self) -> RegionLayer | None:
        return self.find(self.active_id)

    def _free_colour(self) -> QColor:
        used = {r.colour.name() for r in self.regions}
        for colour in REGION_PALETTE:
            if colour.name() not in used:
                return QColor(colour)
        return QColor(REGION_PALETTE[len(self.regions) % len(REGION_PALETTE)])

    def _size(self) -> QSize:
        width, height = self.document.size()
        return QSize(max(1, width), max(1, height))

    def _follow_picture_size(self) -> None:
        size = self._size()
        for region in self.regions:
            if region.mask.size() != size:
                region.mask = _as_mask(region.mask, size)
                self.mask_changed.emit(region.id)

    # -- painting: begin, segments, end = one undo step -------------------------------------
    def begin_stroke(self, tool: str = "") -> bool:
        """Start painting the active region (a new one if there is none). False: no picture."""
        if not self.document.has_image():
            return False
        region = self.active() or self.add()
        if region is None:
            return False
        if region.mask.size() != self._size():
            region.mask = _as_mask(region.mask, self._size())
        self._stroke = (region, QImage(region.mask))
        return True

    def paint_segment(self, start: QPointF, end: QPointF, diameter: float, erase: bool) -> None:
        if self._stroke is None:
            return
        region = self._stroke[0]
        painter = QPainter(region.mask)
        colour = QColor(0, 0, 0) if erase else QColor(255, 255, 255)  # binary, like the mask
        if start == end:
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(colour)
            painter.drawEllipse(start, diameter / 2, diameter / 2)
        else:
            pen = QPen(colour, diameter)
            pen.setCapStyle(Qt.PenCapStyle.RoundCap)
            painter.setPen(pen)
            painter.drawLine(start, end)
        painter.end()
        self.mask_changed.emit(region.id)

    def end_stroke(self, erase: bool = False) -> None:
        if self._stroke is None:
            return
        region, before = self._stroke
        self._stroke = None
        if before == region.mask:
            return
        text = "Erase region" if erase else "Paint region"
        self.document.undo_stack.push(_RegionStroke(self, region.id, text, before, region.mask))

    def _set_mask(self, region_id: int, mask: QImage) -> None:
        region = self.find(region_id)
        if region is not None:  # a deleted region's strokes undo to nothing
            region.mask = _as_mask(mask, self._size())
            self.mask_changed.emit(region_id)


def _as_mask(image: QImage, size: QSize) -> QImage:
    """`image` as a Grayscale8 mask of `size` (scaled by nearest neighbour: stays 0/255)."""
    mask = image.convertToFormat(QImage.Format.Format_Grayscale8)
    if mask.size() != size:
        mask = mask.scaled(
            size, Qt.AspectRatioMode.IgnoreAspectRatio, Qt.TransformationMode.FastTransformation
        )
    return mask


class _RegionStroke(QUndoCommand):
    def __init__(self, layers: RegionLayers, region_id: int, text, before, after):
        super().__init__(text)
        self._layers, self._id = layers, region_id
        self._before, self._after = QImage(before), QImage(after)
        self._skip_first_redo = True  # painted already when pushed

    def redo(self) -> None:
        if self._skip_first_redo:
            self._skip_first_redo = False
            return
        self._layers._set_mask(self._id, QImage(self._after))

    def undo(self) -> None:
        self._layers._set_mask(self._id, QImage(self._before))
