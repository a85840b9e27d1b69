"""Application entry: create the QApplication and the main window, show it, then load the engine.

Nothing on the path to the first window imports torch: the bridge's loader thread does that
after the window is on screen, while the status bar says "Loading engine…".
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

_T0 = time.perf_counter()


def rss_mb() -> float:
    """Resident memory of this process in MB (Linux /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="easel", description="Easel desktop app")
    parser.add_argument("image", nargs="?", help="an image to open on the canvas")
    parser.add_argument(
        "--startup-report",
        nargs="?",
        const="window",
        choices=("window", "engine"),
        help="print start-up time and memory as JSON once the window shows (or once the engine "
        "has loaded, with 'engine'), then quit (used by bench/ui_responsiveness.py)",
    )
    return parser.parse_args(argv)


def create_window(bridge=None):
    """The themed main window with its engine bridge (not started). Needs a QApplication."""
    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication

    from desktop.bridge import EngineBridge
    from desktop.main_window import MainWindow
    from desktop.theme import apply_theme
    from engine.paths import resource

    app = QApplication.instance()
    apply_theme(app)
    icon_path = resource("icons", "easel.png")
    if icon_path.is_file():
        app.setWindowIcon(QIcon(str(icon_path)))
    return MainWindow(bridge or EngineBridge())


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    import desktop  # noqa: F401 - applies the PySide6 reference-count workaround first

    app = QApplication.instance() or QApplication([sys.argv[0]])
    app.setApplicationName("Easel")
    app.setOrganizationName("Easel")
    window = create_window()
    window.show()
    if args.startup_report == "window":
        window.report_startup_problems()
        QTimer.singleShot(0, lambda: _report_and_quit(window))
        return app.exec()
    if args.startup_report == "engine":
        window.bridge.engine_ready.connect(lambda: _report_and_quit(window))
        QTimer.singleShot(0, window.start_background_work)
        return app.exec()
    QTimer.singleShot(0, window.start_background_work)  # torch loads after the window shows
    if args.image:
        QTimer.singleShot(0, lambda: window.images.open_path(args.image))
    return app.exec()


def _report_and_quit(window) -> None:
    report = {
        "window_shown_s": time.perf_counter() - _T0,
        "rss_mb": rss_mb(),
        "torch_loaded": "torch" in sys.modules,
    }
    print(json.dumps(report), flush=True)
    window.close()
    from PySide6.QtWidgets import QApplication

    QApplication.instance().quit()
