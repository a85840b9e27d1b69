"""Application entry: create the QApplication and the main window, then load the engine."""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from PySide6.QtWidgets import QApplication, QMainWindow

    app = QApplication.instance() or QApplication([sys.argv[0], *(argv or [])])
    window = QMainWindow()
    window.setWindowTitle("Easel")
    window.resize(1280, 800)
    window.show()
    return app.exec()
