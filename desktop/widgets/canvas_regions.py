"""Region layers on the canvas: each region's mask drawn in its colour, translucent, over the
picture (under the inpaint mask), and the region brush and eraser that paint the active one.

Kept apart from canvas.py: the canvas only knows that some tools paint layers it does not own
(`CanvasView.extra_tools`); this module adds those tools and the overlay items.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QImage, QPixmap
from PySide6.QtWidgets import QGraphicsPixmapItem

from desktop.state.regions import RegionLayer, RegionLayers
from desktop.widgets.canvas import CanvasView

REGION_PEN, REGION_ERASER = "region", "region-eraser"
REGION_OPACITY = 0.42
#: above the picture and sketch (z 0, 1), under the inpaint mask (z 2) and the preview (z 3)
REGION_Z = 1.5


def region_overlay(region: RegionLayer) -> QImage:
    """The region's mask as its colour with the mask as alpha."""
    overlay = QImage(region.mask.size(), QImage.Format.Format_ARGB32_Premultiplied)
    overlay.fill(QColor(region.colour))
    overlay.setAlphaChannel(region.mask)
    return overlay


class RegionOverlay:
    """Keeps one pixmap item per region in step with the region list."""

    def __init__(self, canvas: CanvasView, regions: RegionLayers):
        self.canvas, self.regions = canvas, regions
        self.items: dict[int, QGraphicsPixmapItem] = {}
        self.visible = True
        canvas.extra_tools[REGION_PEN] = (regions, False)
        canvas.extra_tools[REGION_ERASER] = (regions, True)
        regions.changed.connect(self._sync)
        regions.mask_changed.connect(self._redraw)
        self._sync()

    def set_visible(self, visible: bool) -> None:
        self.visible = visible
        for item in self.items.values():
            item.setVisible(visible)

    def _sync(self) -> None:
        alive = {region.id for region in self.regions.regions}
        for region_id in [i for i in self.items if i not in alive]:
            self.canvas.scene().removeItem(self.items.pop(region_id))
        for region in self.regions.regions:
            if region.id not in self.items:
                item = QGraphicsPixmapItem()
                item.setZValue(REGION_Z)
                item.setOpacity(REGION_OPACITY)
                item.setTransformationMode(Qt.TransformationMode.FastTransformation)
                item.setVisible(self.visible)
                self.canvas.scene().addItem(item)
                self.items[region.id] = item
            self._redraw(region.id)

    def _redraw(self, region_id: int) -> None:
        region, item = self.regions.find(region_id), self.items.get(region_id)
        if region is not None and item is not None:
            item.setPixmap(QPixmap.fromImage(region_overlay(region)))
