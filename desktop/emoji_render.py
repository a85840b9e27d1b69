"""Render the built-in emoji set (SVG bodies shipped in resources/) into the data folder.

The engine reads the rendered pictures (`engine.datasets.emoji.load_rendered`) but never imports
Qt, so rasterising with QtSvg happens here, on first use: the Train dialog renders in slices on
the GUI thread with a progress bar (3,174 emoji at 64 px take about 2 s), and the `easel train`
command renders before it starts the engine. Only QtGui and QtSvg are used (no widgets), so a
QGuiApplication is enough: the command line creates one offscreen.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from engine.datasets import emoji

#: emoji rendered between two progress reports (one slice of GUI-thread work, ~40 ms at 64 px)
SLICE = 64


def rasterise(body: str, size: int, resolution: int) -> np.ndarray | None:
    """One SVG body at `resolution` on white, anti-aliased, as uint8 (R, R, 3); None if QtSvg
    cannot read it."""
    from PySide6.QtCore import QByteArray, QRectF
    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    renderer = QSvgRenderer(QByteArray(emoji.svg_document(body, size).encode("utf-8")))
    if not renderer.isValid():
        return None
    image = QImage(resolution, resolution, QImage.Format.Format_RGB888)
    image.fill(0xFFFFFF)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter, QRectF(0, 0, resolution, resolution))
    painter.end()
    stride = image.bytesPerLine()
    raw = np.frombuffer(image.constBits(), dtype=np.uint8, count=stride * resolution)
    rows = raw.reshape(resolution, stride)[:, : resolution * 3]
    return rows.reshape(resolution, resolution, 3).copy()


def render_steps(resolution: int, cache_dir: Path | None = None) -> Iterator[tuple[int, int]]:
    """Render the whole set, yielding (done, total) after each slice; the `.npz` is written
    (atomically) after the last one. Stopping the iteration early writes nothing."""
    bodies, category_of, size = emoji.read_source(cache_dir)
    names = sorted(bodies)
    rendered: dict[str, np.ndarray] = {}
    for start in range(0, len(names), SLICE):
        for name in names[start : start + SLICE]:
            picture = rasterise(bodies[name], size, resolution)
            if picture is not None:
                rendered[name] = picture
        yield min(start + SLICE, len(names)), len(names)
    kept = sorted(rendered)
    images = np.stack([rendered[n] for n in kept])
    categories = [category_of.get(n, "Other") for n in kept]
    emoji.save_rendered(emoji.npz_path(cache_dir, resolution), images, kept, categories)


def render(
    resolution: int,
    cache_dir: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Render the set in one go (command line, build script); returns the `.npz` path."""
    for done, total in render_steps(resolution, cache_dir):
        if progress is not None:
            progress(done, total)
    return emoji.npz_path(cache_dir, resolution)


def builtin_resolution(source: str, resolution: int) -> int | None:
    """The resolution to render for `source` if it is the emoji set and not rendered yet."""
    if source.strip() != "builtin:emoji" or emoji.is_rendered(resolution):
        return None
    return resolution


def prepare_for_cli(argv: list[str]) -> None:
    """`easel train --data builtin:emoji`: render the set first, with a progress line."""
    if "train" not in argv[:1]:
        return
    data = _option(argv, "--data")
    resolution = _option(argv, "--resolution") or "64"
    if data is None or not resolution.isdigit():
        return  # argparse says what is wrong
    if builtin_resolution(data, int(resolution)) is None:
        return
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtGui import QGuiApplication

    _app = QGuiApplication.instance() or QGuiApplication(["easel"])

    def report(done: int, total: int) -> None:
        print(f"\rRendering the built-in emoji set: {done}/{total}", end="", file=sys.stderr)

    path = render(int(resolution), progress=report)
    print(f"\nRendered into {path}", file=sys.stderr)


def _option(argv: list[str], name: str) -> str | None:
    for index, arg in enumerate(argv):
        if arg == name and index + 1 < len(argv):
            return argv[index + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None
