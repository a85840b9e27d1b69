"""Images in and out of the app: checked loading of dropped/pasted files, PIL <-> QImage.

Every way an image enters the canvas goes through `load_image_file` or `check_qimage`, so a bad
file (not an image, corrupt, a decompression bomb, a folder, a remote URL) always ends in one
`InputError` with a clear message and never touches the canvas.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from PySide6.QtCore import QUrl
from PySide6.QtGui import QImage

from engine.errors import EaselError, InputError

#: refuse anything bigger before decoding it (a 64 MP RGBA image is already 256 MB)
MAX_PIXELS = 64_000_000
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}
IMAGE_FORMATS = {"PNG", "JPEG", "WEBP", "BMP", "MPO"}
MODEL_SUFFIXES = {".safetensors"}


def local_path(url: QUrl) -> Path:
    """The file a dropped URL names; a clear refusal for anything that is not a local file."""
    if not url.isLocalFile():
        shown = url.toDisplayString() or "(empty)"
        raise InputError(
            f"'{shown}' is not a file on this computer. Save the image first, then drop the file."
        )
    return Path(url.toLocalFile())


def load_image_file(path: str | Path) -> QImage:
    """Decode a PNG/JPEG/WebP/BMP file into a QImage (ARGB32), checking size before decoding."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if path.is_dir():
        raise InputError(f"'{path.name}' is a folder. Drop an image file (PNG, JPEG, WebP, BMP).")
    if not path.is_file():
        raise InputError(f"'{path}' does not exist.")
    try:
        with warnings.catch_warnings():
            # PIL warns about big images; we refuse them ourselves with a clearer message
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return _decode(path)
    except UnidentifiedImageError:
        raise InputError(
            f"'{path.name}' is not an image Easel can open (PNG, JPEG, WebP or BMP)."
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"'{path.name}' is damaged and cannot be read ({exc}).") from None
    except Image.DecompressionBombError:
        raise InputError(f"'{path.name}' is too large to open safely.") from None


def _decode(path: Path) -> QImage:
    from PIL import Image

    with Image.open(path) as image:  # reads the header only
        check_pixel_count(image.width, image.height, f"'{path.name}'")
        if image.format not in IMAGE_FORMATS:
            raise InputError(
                f"'{path.name}' is a {image.format} image; Easel opens PNG, JPEG, WebP and BMP."
            )
        image.load()
        return pil_to_qimage(image)


def check_pixel_count(width: int, height: int, name: str = "The image") -> None:
    if width * height > MAX_PIXELS:
        raise InputError(
            f"{name} is {width}x{height} ({width * height / 1e6:.0f} MP); Easel opens images up "
            f"to {MAX_PIXELS / 1e6:.0f} MP. Scale it down first."
        )
    if width < 1 or height < 1:
        raise InputError(f"{name} is empty (0 pixels).")


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
