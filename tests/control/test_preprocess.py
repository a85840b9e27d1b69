"""Preprocessors on a drawn picture: edges where the drawing has edges, nothing elsewhere."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from engine.errors import InputError
from engine.sd.preprocess import run_preprocessor


def square(size: int = 64, stroke: int = 0) -> Image.Image:
    """A black square (filled, or outlined `stroke` px wide) on white, from 16 to 47."""
    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    if stroke:
        draw.rectangle((16, 16, 47, 47), outline="black", width=stroke)
    else:
        draw.rectangle((16, 16, 47, 47), fill="black")
    return image


def map_of(name, image, **options) -> np.ndarray:
    out = run_preprocessor(name, image, options or None)
    assert out.mode == "RGB" and out.size == image.size
    return np.asarray(out.convert("L")).astype(np.float32)


def border_band(width: int = 2) -> np.ndarray:
    """Pixels within `width` of the square's outline."""
    yy, xx = np.mgrid[0:64, 0:64]
    inside_outer = (yy >= 16 - width) & (yy <= 47 + width) & (xx >= 16 - width) & (xx <= 47 + width)
    inside_inner = (yy > 16 + width) & (yy < 47 - width) & (xx > 16 + width) & (xx < 47 - width)
    return inside_outer & ~inside_inner


def test_canny_finds_the_square_outline_and_nothing_else():
    edges = map_of("canny", square())
    band = border_band()
    assert set(np.unique(edges)) <= {0.0, 255.0}
    assert (edges[band] > 0).mean() > 0.2  # a thin closed line along the border
    assert (edges[~band] > 0).sum() == 0
    # every side of the square has edge pixels
    for side in (
        edges[14:19, 20:44],
        edges[45:50, 20:44],
        edges[20:44, 14:19],
        edges[20:44, 45:50],
    ):
        assert side.max() == 255


def test_canny_thresholds_change_what_counts_as_an_edge():
    faint = Image.new("RGB", (64, 64), (128, 128, 128))
    ImageDraw.Draw(faint).rectangle((16, 16, 47, 47), fill=(118, 118, 118))  # a 10-level step
    assert map_of("canny", faint, low=100, high=200).max() == 0
    assert map_of("canny", faint, low=5, high=20).max() == 255


def test_canny_threshold_errors_are_clear():
    with pytest.raises(InputError, match="low <= high"):
        run_preprocessor("canny", square(), {"low": 200, "high": 100})
    with pytest.raises(InputError, match="must be numbers"):
        run_preprocessor("canny", square(), {"low": "x"})


def test_soft_edges_are_soft_and_on_the_border():
    soft = map_of("softedge", square())
    band = border_band(4)
    assert soft[band].mean() > 4 * soft[~band].mean()
    assert len(np.unique(soft)) > 20  # graded, not binary
    assert soft[30:34, 30:34].max() < 40  # flat inside


def test_lineart_turns_dark_lines_into_white_on_black():
    lines = map_of("lineart", square(stroke=2))
    band = border_band()
    assert lines[band].mean() > 100
    assert lines[~band].max() < 60
    assert lines[2:10, 2:10].max() == 0  # white paper is black in the map


@pytest.mark.parametrize("dark_on_light", [True, False])
def test_scribble_binarises_strokes_either_way(dark_on_light):
    strokes = square(stroke=3)
    if not dark_on_light:
        strokes = Image.eval(strokes, lambda v: 255 - v)
    out = map_of("scribble", strokes)
    assert set(np.unique(out)) == {0.0, 255.0}
    stroke_pixels = np.asarray(square(stroke=3).convert("L")) < 128
    assert (out[stroke_pixels] == 255).all() and (out[~stroke_pixels] == 0).all()


def test_none_keeps_the_map():
    image = square()
    assert np.array_equal(np.asarray(run_preprocessor("none", image)), np.asarray(image))
