"""Small line icons drawn with QPainter, in the theme's text colour: no image files to ship,
crisp at any scale, and they match the dark theme (QStyle's standard set has no brush or mask)."""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QIcon, QPainter, QPainterPath, QPen, QPixmap

SIZE = 32
INK = QColor("#d6d9df")
ACCENT = QColor("#4f8cff")


def _brush(p: QPainter) -> None:
    p.setBrush(INK)
    p.drawEllipse(QPointF(11, 21), 6, 6)
    p.setBrush(Qt.BrushStyle.NoBrush)
    p.drawLine(QPointF(15, 17), QPointF(26, 6))


def _eraser(p: QPainter) -> None:
    path = QPainterPath()
    path.moveTo(6, 20)
    path.lineTo(17, 9)
    path.lineTo(26, 18)
    path.lineTo(18, 26)
    path.lineTo(12, 26)
    path.closeSubpath()
    p.drawPath(path)
    p.drawLine(QPointF(11, 15), QPointF(20, 24))


def _clear(p: QPainter) -> None:
    p.drawEllipse(QPointF(16, 16), 10, 10)
    p.drawLine(QPointF(9, 23), QPointF(23, 9))


def _invert(p: QPainter) -> None:
    p.drawEllipse(QPointF(16, 16), 10, 10)
    path = QPainterPath()
    path.moveTo(16, 6)
    path.arcTo(QRectF(6, 6, 20, 20), 90, 180)
    path.closeSubpath()
    p.fillPath(path, INK)


def _fit(p: QPainter) -> None:
    for x, y, dx, dy in ((6, 6, 1, 1), (26, 6, -1, 1), (6, 26, 1, -1), (26, 26, -1, -1)):
        p.drawLine(QPointF(x, y), QPointF(x + 6 * dx, y))
        p.drawLine(QPointF(x, y), QPointF(x, y + 6 * dy))
    p.drawRect(QRectF(11, 11, 10, 10))


def _actual(p: QPainter) -> None:
    font = QFont()
    font.setPixelSize(13)
    font.setBold(True)
    p.setFont(font)
    p.drawText(QRectF(0, 0, SIZE, SIZE), Qt.AlignmentFlag.AlignCenter, "1:1")


def _extend(p: QPainter) -> None:
    p.drawRect(QRectF(5, 9, 12, 14))
    pen = p.pen()
    pen.setStyle(Qt.PenStyle.DashLine)
    p.setPen(pen)
    p.drawRect(QRectF(17, 9, 10, 14))


def _crop(p: QPainter) -> None:
    p.drawLine(QPointF(10, 4), QPointF(10, 22))
    p.drawLine(QPointF(10, 22), QPointF(28, 22))
    p.drawLine(QPointF(4, 10), QPointF(22, 10))
    p.drawLine(QPointF(22, 10), QPointF(22, 28))


def _sketch(p: QPainter) -> None:
    path = QPainterPath()
    path.moveTo(5, 24)
    path.cubicTo(10, 10, 16, 30, 27, 8)
    p.drawPath(path)
    p.setPen(QPen(ACCENT, 2.2))
    p.drawPoint(QPointF(27, 8))


def _rotate(p: QPainter) -> None:
    p.drawArc(QRectF(7, 7, 18, 18), 90 * 16, -270 * 16)
    p.drawLine(QPointF(16, 7), QPointF(12, 3))
    p.drawLine(QPointF(16, 7), QPointF(12, 11))


DRAWERS = {
    "crop": _crop,
    "sketch": _sketch,
    "rotate": _rotate,
    "brush": _brush,
    "eraser": _eraser,
    "clear": _clear,
    "invert": _invert,
    "fit": _fit,
    "actual": _actual,
    "extend": _extend,
}


def icon(name: str) -> QIcon:
    pixmap = QPixmap(SIZE, SIZE)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    pen = QPen(INK, 2.2)
    pen.setCapStyle(Qt.PenCapStyle.RoundCap)
    pen.setJoinStyle(Qt.PenJoinStyle.RoundJoin)
    painter.setPen(pen)
    DRAWERS[name](painter)
    painter.end()
    return QIcon(pixmap)
