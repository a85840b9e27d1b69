"""Image sets for metrics: find the images a set names and open any of them as 8-bit RGB.

A set is a tuple of paths: folders (searched recursively, in a stable sorted order) and single
image files, so "a folder", "a gallery selection" and "a batch written to disk" are all sets.
An `easel batch` output folder (or its manifest.jsonl) stands for the images its manifest lists
as made, so FID/KID describe the whole run and nothing else in the folder.
Every image is opened the same way whatever its size or mode (palette, grey, 16-bit, alpha,
CMYK), so metrics never see a surprise. No torch here.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from engine.batch.manifest import batch_images
from engine.errors import InputError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"})

#: folders inside a set that hold copies, not pictures of their own (the gallery's thumbnails)
SKIPPED_FOLDERS = frozenset({"thumbs", "thumbnails", "__pycache__"})

#: decompression-bomb guard: larger images are refused with a message, not loaded
MAX_PIXELS = 12_000 * 12_000


def list_images(sources: Iterable[str | Path], *, what: str = "The set") -> list[Path]:
    """Every image file the sources name, folders expanded recursively; duplicates once.

    Raises InputError for a path that does not exist, a file that is not an image, or a set
    with no images at all (an empty folder), naming the path so the user can fix it.
    """
    found: dict[Path, None] = {}
    sources = [Path(s).expanduser() for s in sources]
    for source in sources:
        from_batch = batch_images(source)
        if from_batch is not None:  # a batch's output: its finished images, not the manifest
            for path in from_batch:
                found.setdefault(path.resolve(), None)
        elif source.is_dir():
            for path in sorted(source.rglob("*")):
                if _in_skipped_folder(path, source):
                    continue
                if path.is_file() and _is_image_name(path):
                    found.setdefault(path.resolve(), None)
        elif source.is_file():
            if not _is_image_name(source):
                raise InputError(
                    f"'{source}' is not an image file Easel reads "
                    f"({', '.join(sorted(IMAGE_SUFFIXES))})."
                )
            found.setdefault(source.resolve(), None)
        else:
            raise InputError(f"'{source}' does not exist. Check the path.")
    if not found:
        named = ", ".join(f"'{s}'" for s in sources) or "nothing"
        raise InputError(
            f"{what} has no images: {named} holds no "
            f"{'/'.join(sorted(s.lstrip('.') for s in IMAGE_SUFFIXES))} files."
        )
    return list(found)


def _in_skipped_folder(path: Path, root: Path) -> bool:
    """A thumbnail folder or a hidden one below `root`: counting those would compare a set
    with smaller copies of itself (the gallery keeps its thumbnails in `thumbs/`)."""
    folders = path.relative_to(root).parts[:-1]
    return any(f.lower() in SKIPPED_FOLDERS or f.startswith(".") for f in folders)


def _is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def open_rgb(path: str | Path) -> Image.Image:
    """Open any image as 8-bit RGB. Raises InputError naming the file if it cannot be read.

    Through Easel's one loader (engine.images): size checked from the header, EXIF orientation,
    16-bit and float images scaled to 8 bits. Transparency is then dropped as `convert("RGB")`
    does (the FID reference tools do the same, so numbers stay comparable).
    """
    from engine.images import open_user_image

    image = open_user_image(path, "picture", mode=None, max_pixels=MAX_PIXELS)
    return _to_rgb(image)


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}:
        values = np.asarray(image, dtype=np.float64)
        high = 65535.0 if image.mode.startswith("I;16") else max(float(values.max()), 1.0)
        if image.mode == "I" and high <= 255:
            high = 255.0
        grey = np.clip(values / high * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if image.mode == "RGB":
        image.load()
        return image.copy()
    return image.convert("RGB")
