"""Easel's Qt desktop app: widgets bound to small state objects, talking to the engine through a
bridge that re-emits engine events as Qt signals on the GUI thread."""

from desktop.qt_compat import immortalize_singletons

# Before any Qt call: see desktop/qt_compat.py (PySide6 6.12 reference-count bug).
immortalize_singletons()
