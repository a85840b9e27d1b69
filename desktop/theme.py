"""A calm dark theme: Fusion style, a dark palette and a short stylesheet for the few custom
roles (section headers, notes, the primary button, toasts)."""

from __future__ import annotations

from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

ACCENT = "#4f8cff"

STYLESHEET = f"""
QMainWindow, QDialog {{ background: #232529; }}
QDockWidget {{ titlebar-close-icon: none; }}
QDockWidget::title {{ padding: 6px 10px; background: #2b2d32; color: #b8bcc6; }}
QLabel#section {{ color: #8f96a3; font-size: 10pt; font-weight: 600; letter-spacing: 1px;
    padding-top: 4px; }}
QLabel#note {{ color: #9aa0ab; }}
QPlainTextEdit, QLineEdit {{
    background: #1b1c1f; border: 1px solid #3a3d44; border-radius: 5px; padding: 4px 6px;
    selection-background-color: {ACCENT}; }}
QPlainTextEdit:focus, QLineEdit:focus {{ border-color: {ACCENT}; }}
QWidget#buttonBar {{ background: #2b2d32; border-top: 1px solid #3a3d44; }}
QPushButton {{ background: #34373e; border: 1px solid #43474f; border-radius: 5px;
    padding: 5px 12px; }}
QPushButton:hover {{ background: #3c3f47; }}
QPushButton:disabled {{ color: #6b6f78; background: #2b2d32; }}
QPushButton#primary {{ background: {ACCENT}; border-color: {ACCENT}; color: white;
    font-weight: 600; }}
QPushButton#primary:hover {{ background: #6a9dff; }}
QGroupBox {{ border: 1px solid #3a3d44; border-radius: 6px; margin-top: 14px; padding: 10px; }}
QGroupBox::title {{ subcontrol-origin: margin; left: 10px; padding: 0 4px; color: #b8bcc6; }}
QProgressBar {{ background: #1b1c1f; border: 1px solid #3a3d44; border-radius: 4px;
    text-align: center; min-height: 14px; max-height: 14px; }}
QProgressBar::chunk {{ background: {ACCENT}; border-radius: 3px; }}
QFrame#toast {{ background: #2f3238; border: 1px solid #4a4e57; border-radius: 8px; }}
QFrame#toast[kind="error"] {{ background: #4a2a2e; border-color: #a2474f; }}
QListWidget, QTableView {{ background: #1b1c1f; border: 1px solid #34373e; border-radius: 5px; }}
QHeaderView::section {{ background: #2b2d32; padding: 4px 6px; border: none;
    border-right: 1px solid #3a3d44; }}
QToolBar {{ background: #2b2d32; border: none; spacing: 4px; padding: 3px; }}
QStatusBar {{ background: #2b2d32; color: #b8bcc6; }}
"""


def apply_theme(app: QApplication) -> None:
    app.setStyle("Fusion")
    palette = QPalette()
    colours = {
        QPalette.ColorRole.Window: "#232529",
        QPalette.ColorRole.WindowText: "#e4e6eb",
        QPalette.ColorRole.Base: "#1b1c1f",
        QPalette.ColorRole.AlternateBase: "#24262a",
        QPalette.ColorRole.ToolTipBase: "#2f3238",
        QPalette.ColorRole.ToolTipText: "#e4e6eb",
        QPalette.ColorRole.Text: "#e4e6eb",
        QPalette.ColorRole.Button: "#34373e",
        QPalette.ColorRole.ButtonText: "#e4e6eb",
        QPalette.ColorRole.Highlight: ACCENT,
        QPalette.ColorRole.HighlightedText: "#ffffff",
        QPalette.ColorRole.PlaceholderText: "#80858f",
        QPalette.ColorRole.Link: ACCENT,
    }
    for role, colour in colours.items():
        palette.setColor(role, QColor(colour))
    for role in (
        QPalette.ColorRole.Text,
        QPalette.ColorRole.ButtonText,
        QPalette.ColorRole.WindowText,
    ):
        palette.setColor(QPalette.ColorGroup.Disabled, role, QColor("#6b6f78"))
    app.setPalette(palette)
    app.setStyleSheet(STYLESHEET)
