"""Shared by the Control panel tests: a window with an SD model chosen, drawing, generating."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QMouseEvent

CONTROLNET = "/models/controlnet/control_v11p_sd15_scribble.safetensors"


@pytest.fixture
def sd_window(window, tmp_path):
    """The window with an SD 1.x model chosen (a path the library does not know: SD rules)."""
    window.settings.set("model", str(tmp_path / "sd15.safetensors"))
    window.settings.set("width", 64)
    window.settings.set("height", 64)
    window.settings.set("prompt", "a house on a hill")
    return window


def _generate(qtbot, window, fake):
    count = len(fake.requests)
    assert window.generation.generate() is not None, window.toast.label.text()
    qtbot.waitUntil(lambda: len(fake.requests) == count + 1, timeout=5000)
    qtbot.waitUntil(lambda: not window.job.busy, timeout=5000)
    return fake.requests[-1]


def _drag(qtbot, canvas, points):
    """Press, move through `points` (scene pixels), release: one stroke as a user draws it."""
    view = [canvas.mapFromScene(QPointF(*p)) for p in points]
    qtbot.mousePress(canvas.viewport(), Qt.MouseButton.LeftButton, pos=view[0])
    for point in view[1:]:
        canvas.mouseMoveEvent(_move_event(point))
    qtbot.mouseRelease(canvas.viewport(), Qt.MouseButton.LeftButton, pos=view[-1])


def _move_event(point: QPoint):
    return QMouseEvent(
        QEvent.Type.MouseMove,
        QPointF(point),
        QPointF(point),
        Qt.MouseButton.NoButton,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
