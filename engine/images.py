"""The one way a picture the user gave enters Easel.

Every path that reads a user's image (the canvas's drop/paste/open, `easel generate --init/--mask`,
control and reference images, training and evaluation folders, the upscaler, the latent explorer)
calls `open_user_image`, so each bad file ends in one `InputError` that names the file and says
what to do, and no path decodes a decompression bomb:

1. the path must be a local file (not a folder, not missing);
2. the header is read first (`Image.open` decodes nothing) and the size checked against
   `MAX_PIXELS` before any pixel is decoded; Pillow's own bomb guard is turned into the same
   message;
3. the format must be one Easel reads;
4. the pixels are decoded, EXIF orientation applied (a phone photo stands the right way up) and
   the colour mode normalised: 16-bit and float images scaled to 8 bits instead of clipped,
   transparency flattened onto white for RGB, kept for RGBA.

Pillow only, no torch: the desktop app imports this at start-up.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from engine.errors import InputError

#: refuse anything bigger before decoding it (a 64 MP RGBA image is already 256 MB of pixels)
MAX_PIXELS = 64_000_000
#: what Pillow calls the formats Easel reads (MPO: JPEGs from cameras with a second frame)
FORMATS = frozenset({"PNG", "JPEG", "MPO", "WEBP", "BMP", "GIF", "TIFF"})
SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
FORMAT_NAMES = "PNG, JPEG, WebP, BMP, GIF or TIFF"
_HIGH_DEPTH_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


class PictureError(InputError):
    """A user's picture that cannot be used; `reason` is the short why, for lists of skipped
    files ("not a picture", "damaged", "too large", "unsupported format", "missing")."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


def is_image_name(path: str | Path) -> bool:
    """Whether a file name looks like a picture Easel reads (hidden files never do)."""
    path = Path(path)
    return path.suffix.lower() in SUFFIXES and not path.name.startswith(".")


def open_user_image(
    path: str | Path,
    what: str = "image",
    *,
    mode: str | None = "RGB",
    max_pixels: int = MAX_PIXELS,
) -> Image.Image:
    """Decode a user's picture, checked; `mode` is "RGB", "RGBA", "L" or None (8-bit as stored).

    Raises InputError with a message naming `what` and the file for every way it can fail.
    """
    path = _checked_path(path, what)
    try:
        with warnings.catch_warnings():
            # Pillow warns (and past 2x its limit raises) on big images; we refuse them ourselves
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:  # reads the header only
                name = f"The {what} '{path.name}'"
                check_pixel_count(image.width, image.height, name, max_pixels)
                if image.format not in FORMATS:
                    raise PictureError(
                        f"The {what} '{path.name}' is a {image.format} file; Easel reads "
                        f"{FORMAT_NAMES} pictures. Save it in one of those formats.",
                        "unsupported format",
                    )
                image.seek(0)  # the first frame of an animation
                image.load()
                picture = ImageOps.exif_transpose(image) or image
                return _normalised(picture, mode)
    except Image.DecompressionBombError as exc:
        # Pillow refuses past twice its own limit while reading the header, before our check
        found = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(found.group(1)) / 1e6:.0f} MP" if found else "far too large"
        raise PictureError(
            f"The {what} '{path.name}' is {size}; Easel opens pictures up to "
            f"{max_pixels / 1e6:.0f} MP. Scale it down first.",
            "too large",
        ) from None
    except UnidentifiedImageError:
        raise PictureError(
            f"The {what} '{path.name}' is not a picture Easel can read. Use a {FORMAT_NAMES} file.",
            "not a picture",
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise PictureError(
            f"The {what} '{path.name}' is damaged and cannot be read ({exc}). Re-save it or "
            "choose another file.",
            "damaged",
        ) from None


def check_pixel_count(
    width: int, height: int, name: str = "The image", max_pixels: int = MAX_PIXELS
) -> None:
    """InputError for an empty picture or one over `max_pixels` (read from a header)."""
    if width < 1 or height < 1:
        raise PictureError(f"{name} is empty (0 pixels).", "empty")
    if width * height > max_pixels:
        raise PictureError(
            f"{name} is {width}x{height} ({width * height / 1e6:.0f} MP); Easel opens pictures "
            f"up to {max_pixels / 1e6:.0f} MP. Scale it down first.",
            "too large",
        )


def _checked_path(path: str | Path, what: str) -> Path:
    text = str(path or "").strip()
    if not text:
        raise PictureError(f"No {what} was given. Choose a picture file.", "missing")
    if "://" in text and not text.lower().startswith("file://"):
        raise PictureError(
            f"The {what} '{text}' is not a file on this computer. Save the picture first.",
            "not a local file",
        )
    resolved = Path(text.removeprefix("file://")).expanduser()
    if resolved.is_dir():
        raise PictureError(
            f"The {what} '{resolved.name}' is a folder. Choose a picture file.", "a folder"
        )
    if not resolved.is_file():
        raise PictureError(f"The {what} '{resolved}' does not exist. Check the path.", "missing")
    return resolved


def _normalised(image: Image.Image, mode: str | None) -> Image.Image:
    """An 8-bit copy in `mode`, detached from the file."""
    if image.mode in _HIGH_DEPTH_MODES:
        image = _to_8_bit(image)
    if mode is None:
        return image.copy()
    if mode == "RGB":
        return flatten_alpha(image).convert("RGB")
    return image.convert(mode)


def flatten_alpha(image: Image.Image) -> Image.Image:
    """Transparent pictures go on white, not on whatever colour the hidden pixels hold."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image


def _to_8_bit(image: Image.Image) -> Image.Image:
    """16-bit and float pictures scaled into 0..255 (clipping would turn most of them white)."""
    import numpy as np  # only for these rare pictures: the app imports this module at start-up

    values = np.asarray(image, dtype=np.float64)
    if image.mode.startswith("I;16"):
        high = 65535.0
    elif image.mode == "F":
        high = 1.0 if float(values.max(initial=0.0)) <= 1.0 else float(values.max())
    else:
        high = max(float(values.max(initial=0.0)), 1.0)
        high = 255.0 if high <= 255 else high
    scaled = np.clip(values / high * 255.0, 0, 255).round().astype(np.uint8)
    return Image.fromarray(scaled, "L")
