"""Bringing images onto the canvas and taking them off: drops, open, paste, copy, outpaint.

Every path checks the input first (`desktop.images`), so a bad drop is one clear message and the
canvas stays as it was. A dropped image switches to image-to-image; painting a mask switches to
inpaint (and clearing it back); a PNG that carries generation settings offers to restore them.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, QUrl, Signal
from PySide6.QtGui import QGuiApplication, QImage

from desktop.images import (
    MODEL_SUFFIXES,
    check_qimage,
    load_image_file,
    local_path,
    read_imported_settings,
)
from desktop.state.document import CanvasDocument
from desktop.state.generation import GenerationSettings
from engine.api import Mode
from engine.errors import EaselError, InputError

OUTPAINT_SIDES = ("left", "right", "top", "bottom")
#: files that can carry generation settings (A1111 puts them in JPEG/WebP EXIF too)
SETTINGS_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}


class ImageActions(QObject):
    message = Signal(str, str)  # text, "info" | "error"
    #: a dropped image carries settings: (ImportedSettings, file name); the window offers them
    settings_found = Signal(object, str)
    #: dropped model files for the model library
    models_dropped = Signal(list)

    def __init__(self, document: CanvasDocument, settings: GenerationSettings, parent=None):
        super().__init__(parent)
        self.document = document
        self.settings = settings
        document.undo_stack.indexChanged.connect(self._follow_mask)

    # -- in -----------------------------------------------------------------------------------
    def open_urls(self, urls: list[QUrl]) -> bool:
        """Open the first dropped image; model files go to the library. False if nothing opened."""
        if not urls:
            return False
        models, images = [], []
        try:
            for url in urls:
                path = local_path(url)
                (models if path.suffix.lower() in MODEL_SUFFIXES else images).append(path)
        except InputError as exc:
            self.message.emit(str(exc), "error")
            return False
        if models:
            self.models_dropped.emit(models)
        if images:
            if len(images) > 1:
                self.message.emit("Several files dropped: opening the first one.", "info")
            return self.open_path(images[0])
        return bool(models)

    def open_path(self, path: str | Path) -> bool:
        path = Path(path)
        try:
            image = load_image_file(path)
        except EaselError as exc:
            self.message.emit(str(exc), "error")
            return False
        self._take(image, f"Open {path.name}")
        # PNG chunks, JPEG/WebP EXIF (A1111 writes both) or stealth bits in a PNG's alpha
        found = read_imported_settings(path) if path.suffix.lower() in SETTINGS_SUFFIXES else None
        if found is not None:
            self.settings_found.emit(found, path.name)
        return True

    def open_qimage(self, image: QImage | None, what: str = "The dropped image") -> bool:
        try:
            image = check_qimage(image, what)
        except EaselError as exc:
            self.message.emit(str(exc), "error")
            return False
        self._take(image, "Paste image")
        return True

    def _take(self, image: QImage, text: str) -> None:
        """A picture the user brought in is there to be edited: text to image becomes image to
        image; a mode that already uses the canvas (inpaint) stays as the user chose it."""
        self.document.set_image(image, text)
        if self.settings.mode is Mode.TXT2IMG:
            self.settings.set("mode", Mode.IMG2IMG.value)

    def paste(self) -> bool:
        mime = QGuiApplication.clipboard().mimeData()
        if mime is None:
            return False
        if mime.hasUrls():
            return self.open_urls(list(mime.urls()))
        if mime.hasImage():
            return self.open_qimage(QImage(mime.imageData()), "The clipboard image")
        text = mime.text().strip() if mime.hasText() else ""
        if text:
            url = QUrl(text) if "://" in text else QUrl.fromLocalFile(text)
            return self.open_urls([url])
        self.message.emit("The clipboard holds no image.", "error")
        return False

    # -- out ----------------------------------------------------------------------------------
    def copy(self) -> bool:
        if not self.document.has_image():
            self.message.emit("There is no image on the canvas to copy.", "error")
            return False
        QGuiApplication.clipboard().setImage(self.document.image)
        self.message.emit("Image copied to the clipboard.", "info")
        return True

    def copy_file(self, path: Path) -> bool:
        try:
            image = load_image_file(path)
        except EaselError as exc:
            self.message.emit(str(exc), "error")
            return False
        QGuiApplication.clipboard().setImage(image)
        self.message.emit("Image copied to the clipboard.", "info")
        return True

    # -- outpaint -----------------------------------------------------------------------------
    def extend(self, side: str, amount: int) -> bool:
        """Grow the canvas on one side by `amount` (rounded to 8) and switch to inpaint."""
        if not self.document.has_image():
            self.message.emit("Open or generate an image before extending the canvas.", "error")
            return False
        if side not in OUTPAINT_SIDES:
            raise ValueError(side)
        amount = max(8, int(amount) // 8 * 8)
        width, height = self.document.size()
        if max(width, height) + amount > 4096:
            self.message.emit("The canvas would be larger than 4096 pixels.", "error")
            return False
        sizes = {s: (amount if s == side else 0) for s in OUTPAINT_SIDES}
        self.document.extend(sizes["left"], sizes["top"], sizes["right"], sizes["bottom"])
        self.settings.set("mode", Mode.INPAINT.value)
        return True

    # -- mode follows the mask ------------------------------------------------------------------
    def _follow_mask(self) -> None:
        """Painting a mask means inpaint, and undoing or clearing it goes back to image to
        image. A new picture never moves the Mode box: a result that replaces the picture
        (and, at another size, its mask) leaves the mode the user chose."""
        if not self.document.has_image():
            if self.settings.mode is not Mode.TXT2IMG:
                self.settings.set("mode", Mode.TXT2IMG.value)
            return
        if self.document.has_mask():
            if self.settings.mode is not Mode.INPAINT:
                self.settings.set("mode", Mode.INPAINT.value)
        elif self.settings.mode is Mode.INPAINT and not self.document.picture_replaced:
            self.settings.set("mode", Mode.IMG2IMG.value)
