"""Hosted tool windows (latent explorer, train dialog, evaluate panel, batch dialog, ...):
opened by module and class name, given what they ask for by parameter name, and closed with
the main window. A tool that is missing from this build is reported, never fatal."""

from __future__ import annotations

import importlib
import inspect

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QWidget

from desktop.images import pil_to_qimage
from desktop.widgets.toast import ERROR
from engine.errors import EaselError


class ToolWindows:
    def __init__(self, window):
        self._window = window
        self.open_windows: list[QWidget] = []

    def open(self, module_name: str, class_name: str):
        """Open a hosted tool window; if it is not installed, say so and carry on."""
        window = self._window
        try:
            tool_class = getattr(importlib.import_module(module_name), class_name)
            tool = tool_class(**_tool_kwargs(tool_class, window))
        except (ImportError, AttributeError, TypeError, EaselError) as exc:
            window.show_message(f"{class_name} is not available in this build ({exc}).", ERROR)
            return None
        if hasattr(tool, "open_image"):  # a picture the tool made, opened on the canvas
            tool.open_image.connect(self._open_pil)
        is_panel = isinstance(tool, QWidget) and not isinstance(tool, QDialog)
        if is_panel:
            tool.setWindowFlag(Qt.WindowType.Window)  # a panel shown as its own window
        self.open_windows.append(tool)
        tool.show()
        if is_panel:
            _centre_over(tool, window)  # dialogs centre themselves; a panel would open at 0,0
        return tool

    def close_all(self) -> None:
        for tool in self.open_windows:
            tool.close()

    def _open_pil(self, image) -> None:
        self._window.images.open_qimage(pil_to_qimage(image), "The picture")


def _centre_over(window: QWidget, parent: QWidget) -> None:
    size = window.size().expandedTo(window.sizeHint())
    frame = parent.frameGeometry()
    window.move(frame.center().x() - size.width() // 2, frame.center().y() - size.height() // 2)


def _tool_kwargs(tool_class: type, window) -> dict:
    """Pass what the hosted tool asks for by name: an engine handle, the runtime options, the
    generation settings, the gallery, the model library, the parent window."""
    try:
        params = inspect.signature(tool_class).parameters
    except (TypeError, ValueError):
        return {}
    port = window.bridge.port()
    offered = {
        "engine_like": port,
        "engine": port,
        "bridge": port,
        "runtime": window.preferences.runtime(),
        "settings": window.settings,
        "gallery": window.gallery,
        "library": window.library,
        "parent": window,
    }
    return {name: value for name, value in offered.items() if name in params}
