"""Non-blocking messages: a card at the bottom of the window that fades after a few seconds,
optionally with one action button (e.g. "Restore settings"). Never modal: the app keeps working.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QToolButton, QWidget

INFO, ERROR = "info", "error"


class Toast(QFrame):
    def __init__(self, parent: QWidget):
        super().__init__(parent)
        self.setObjectName("toast")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(14, 10, 8, 10)
        layout.setSpacing(10)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.label, 1)
        self.action = QPushButton()
        self.action.hide()
        layout.addWidget(self.action)
        close = QToolButton()
        close.setText("✕")
        close.setAutoRaise(True)
        close.clicked.connect(self.hide)
        layout.addWidget(close)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self.hide)
        self._callback: Callable[[], None] | None = None
        self.action.clicked.connect(self._act)
        self.kind = INFO
        self.hide()

    def show_message(
        self,
        text: str,
        kind: str = INFO,
        *,
        action: str = "",
        callback: Callable[[], None] | None = None,
        seconds: float = 6.0,
    ) -> None:
        self.kind = kind
        self.setProperty("kind", kind)
        self.style().unpolish(self)
        self.style().polish(self)
        self.label.setText(text)
        self._callback = callback
        self.action.setText(action)
        self.action.setVisible(bool(action))
        if action:
            seconds = max(seconds, 12.0)  # leave time to decide
        self._place()
        self.show()
        self.raise_()
        self._timer.start(int(seconds * 1000))

    def _act(self) -> None:
        callback, self._callback = self._callback, None
        self.hide()
        if callback is not None:
            callback()

    def _place(self) -> None:
        parent = self.parentWidget()
        width = min(560, parent.width() - 40)
        self.setFixedWidth(max(240, width))
        # the height the wrapped text needs at this width (adjustSize() alone guesses from an
        # unwrapped width and leaves a band of empty space above long messages)
        layout = self.layout()
        layout.activate()
        height = layout.heightForWidth(self.width()) if layout.hasHeightForWidth() else -1
        if height > 0:  # plus the frame, and a little room for the label's own rounding
            self.setFixedHeight(height + 2 * self.frameWidth() + 6)
        else:
            self.setFixedHeight(self.sizeHint().height())
        x = (parent.width() - self.width()) // 2
        y = parent.height() - self.height() - 44
        self.move(max(0, x), max(0, y))
