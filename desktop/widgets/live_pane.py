"""The live painting pane: the newest live picture over the canvas's top-right corner, what it
is doing, and Keep.

It floats over the canvas view (a child widget, placed again when the view resizes) so the
user's own picture stays where it is, untouched, beside the picture it would become. Step
previews replace the image while a live update runs; the finished picture stays until the next
one.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, QSize, Qt, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

MARGIN = 12
#: the picture's side on screen: a 64 px emoji and a 512 px SDXL sketch show at the same size
MIN_SIDE, MAX_SIDE = 160, 320
SHARE_OF_VIEW = 0.34  # of the view's shorter side


class LivePane(QFrame):
    keep_requested = Signal()
    #: the user asked for the model's fast preview decoder (shown when the model has none)
    build_requested = Signal()

    def __init__(self, view: QWidget):
        super().__init__(view)
        self.setObjectName("live-pane")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setAutoFillBackground(True)
        self.setStyleSheet(
            "#live-pane { background: rgba(28, 30, 34, 235); border: 1px solid #5c9ee0;"
            " border-radius: 6px; }"
        )
        self._image: QImage | None = None
        self.final = False  # the image is a finished live picture, not a step preview
        title = QLabel("<b>Live</b>")
        self.status = QLabel("Waiting for a change…")
        self.status.setStyleSheet("color: #b9bec8;")
        self.status.setWordWrap(True)
        self.picture = QLabel()
        self.picture.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.picture.setStyleSheet("background: #1b1c1f;")
        self.keep = QPushButton("Keep")
        self.keep.setToolTip("Put this picture on the canvas and in the gallery")
        self.keep.setEnabled(False)
        self.keep.clicked.connect(self.keep_requested)
        self.build = QPushButton("Build fast preview")
        self.build.setToolTip(
            "This model has no fast preview decoder, so each live picture is decoded by the "
            "full VAE. Build one from the model's own VAE: a few minutes on the CPU, once per "
            "model; live pictures then decode about ten times faster."
        )
        self.build.clicked.connect(self.build_requested)
        self.build.hide()
        header = QHBoxLayout()
        header.addWidget(title)
        header.addStretch(1)
        header.addWidget(self.keep)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 6, 8, 8)
        layout.setSpacing(6)
        layout.addLayout(header)
        layout.addWidget(self.picture)
        layout.addWidget(self.status)
        layout.addWidget(self.build, 0, Qt.AlignmentFlag.AlignLeft)
        view.installEventFilter(self)
        self.hide()

    # -- what it shows ------------------------------------------------------------------------
    @property
    def image(self) -> QImage | None:
        return self._image

    def show_image(self, image: QImage, *, final: bool) -> None:
        self._image = image
        self.final = final
        self.keep.setEnabled(final)
        self._draw()

    def set_status(self, text: str, *, error: bool = False) -> None:
        self.status.setStyleSheet(f"color: {'#e0605a' if error else '#b9bec8'};")
        if text != self.status.text():
            self.status.setText(text)
            if self.isVisible():
                self.place()  # a wrapped status needs the pane taller (or shorter) to fit

    def offer_build(self, offered: bool) -> None:
        if offered == self.build.isHidden():  # isVisible is False while the pane is hidden
            self.build.setVisible(offered)
            self.place()

    def clear(self) -> None:
        self._image = None
        self.final = False
        self.keep.setEnabled(False)
        self.picture.clear()
        self.set_status("Waiting for a change…")

    def _draw(self) -> None:
        side = self._side()
        self.picture.setFixedSize(side, side)
        if self._image is None or self._image.isNull():
            self.picture.clear()
            return
        pixmap = QPixmap.fromImage(self._image).scaled(
            QSize(side, side),
            Qt.AspectRatioMode.KeepAspectRatio,
            Qt.TransformationMode.SmoothTransformation,
        )
        self.picture.setPixmap(pixmap)

    # -- placement over the view ------------------------------------------------------------------
    def _side(self) -> int:
        view = self.parentWidget()
        shorter = min(view.width(), view.height()) if view is not None else MAX_SIDE
        return int(max(MIN_SIDE, min(MAX_SIDE, shorter * SHARE_OF_VIEW)))

    def place(self) -> None:
        view = self.parentWidget()
        if view is None:
            return
        self._draw()
        self.adjustSize()
        self.move(max(0, view.width() - self.width() - MARGIN), MARGIN)
        self.raise_()

    def showEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        self.place()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802
        if watched is self.parentWidget() and event.type() == QEvent.Type.Resize:
            self.place()
        return False
