"""Images in and out of the app: checked loading of dropped/pasted files, PIL <-> QImage.

Every way an image enters the canvas goes through `load_image_file` or `check_qimage`, so a bad
file (not an image, corrupt, a decompression bomb, a folder, a remote URL) always ends in one
`InputError` with a clear message and never touches the canvas.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QUrl
from PySide6.QtGui import QImage

from engine.errors import EaselError, InputError
from engine.images import MAX_PIXELS, SUFFIXES, check_pixel_count, open_user_image

__all__ = ["MAX_PIXELS", "check_pixel_count", "load_image_file", "local_path"]

IMAGE_SUFFIXES = set(SUFFIXES)
MODEL_SUFFIXES = {".safetensors", ".gguf"}


def local_path(url: QUrl) -> Path:
    """The file a dropped URL names; a clear refusal for anything that is not a local file."""
    if not url.isLocalFile():
        shown = url.toDisplayString() or "(empty)"
        raise InputError(
            f"'{shown}' is not a file on this computer. Save the image first, then drop the file."
        )
    return Path(url.toLocalFile())


def load_image_file(path: str | Path) -> QImage:
    """Decode a user's picture into a QImage (ARGB32) through the engine's one checked loader
    (size read from the header before decoding, format, EXIF orientation, colour mode)."""
    return pil_to_qimage(open_user_image(path, "picture", mode="RGBA"))


def check_qimage(image: QImage | None, what: str = "The clipboard image") -> QImage:
    if image is None or image.isNull():
        raise InputError(f"{what} could not be read as an image.")
    check_pixel_count(image.width(), image.height(), what)
    return image.convertToFormat(QImage.Format.Format_ARGB32)


def pil_to_qimage(image) -> QImage:
    """Copy a PIL image into a QImage that owns its pixels (safe to use on any thread)."""
    rgba = image.convert("RGBA")
    data = rgba.tobytes("raw", "RGBA")
    qimage = QImage(data, rgba.width, rgba.height, rgba.width * 4, QImage.Format.Format_RGBA8888)
    return qimage.convertToFormat(QImage.Format.Format_ARGB32)  # converts into a new buffer


def qimage_to_pil(image: QImage, mode: str = "RGB"):
    from PIL import Image

    rgba = image.convertToFormat(QImage.Format.Format_RGBA8888)
    size = (rgba.width(), rgba.height())
    data = bytes(rgba.constBits())[: rgba.bytesPerLine() * rgba.height()]
    pil = Image.frombuffer("RGBA", size, data, "raw", "RGBA", rgba.bytesPerLine(), 1)
    return pil.convert(mode)


def read_imported_settings(path: str | Path):
    """The settings in an image's metadata with where they came from (`ImportedSettings`:
    Easel, AUTOMATIC1111, ComfyUI, InvokeAI, Fooocus, NovelAI), or None. Never raises: a damaged
    file is an image without settings to the person who dropped it."""
    from engine.metadata import read_image_settings

    try:
        return read_image_settings(path)
    except EaselError:
        return None


def read_generation_settings(path: str | Path):
    """The `GenerationRequest` stored in an image's metadata, or None."""
    found = read_imported_settings(path)
    return found.request if found is not None else None
