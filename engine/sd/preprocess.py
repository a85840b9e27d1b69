"""Control-map preprocessors, run on the engine worker: numpy and Pillow only (OpenCV clashes
with Qt's own libraries), plus a transformers depth model for "depth" (engine/sd/depth.py).

Every preprocessor takes an RGB picture and returns the RGB map a ControlNet reads, white
features on black, at the picture's size:

- canny: Gaussian blur, Sobel gradients, non-maximum suppression along the gradient, then
  hysteresis between a low and a high threshold (OpenCV's thresholds on the L2 gradient of the
  0-255 image, so A1111's defaults 100/200 mean the same here).
- softedge: HED-like soft edges: gradient magnitude at three blur scales, averaged.
- lineart: dark strokes on a light picture become white lines on black (how much darker than
  the local background a pixel is).
- scribble: the user's strokes as they are, binarised (dark strokes on white are inverted).
- none: the image is already a control map.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from engine.errors import InputError

CANNY_DEFAULTS = {"low": 100.0, "high": 200.0}
_SOBEL_X = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float32)


def run_preprocessor(name: str, image: Image.Image, options: dict | None = None) -> Image.Image:
    """The control map for `image` (RGB) made by preprocessor `name`."""
    options = dict(options or {})
    image = image.convert("RGB")
    if name == "none":
        return image
    if name == "canny":
        low, high = _canny_thresholds(options)
        edges = canny(_grey(image), low, high)
    elif name == "softedge":
        edges = soft_edges(_grey(image))
    elif name == "lineart":
        edges = lineart(_grey(image))
    elif name == "scribble":
        edges = scribble(_grey(image))
    elif name == "depth":
        from engine.sd.depth import estimate_depth

        return estimate_depth(image, options)
    else:
        raise InputError(f"Unknown preprocessor '{name}'.")
    return Image.fromarray(edges, "L").convert("RGB")


def _canny_thresholds(options: dict[str, Any]) -> tuple[float, float]:
    try:
        low = float(options.get("low", CANNY_DEFAULTS["low"]))
        high = float(options.get("high", CANNY_DEFAULTS["high"]))
    except (TypeError, ValueError):
        raise InputError("Canny thresholds 'low' and 'high' must be numbers (0-255).") from None
    if not (0 <= low <= 255 and 0 <= high <= 255) or low > high:
        raise InputError(
            f"Canny thresholds must be 0-255 with low <= high (got low {low:g}, high {high:g})."
        )
    return low, high


def _grey(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("L"), dtype=np.float32)


def _blur(grey: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur in float (Pillow blurs only 8-bit images), edges reflected."""
    if sigma <= 0:
        return grey
    radius = max(1, int(round(3 * sigma)))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps = (taps / taps.sum()).astype(np.float32)
    out = grey.astype(np.float32)
    for axis in (0, 1):
        pad = [(0, 0), (0, 0)]
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="reflect")
        length = out.shape[axis]
        out = sum(
            weight * np.take(padded, np.arange(i, i + length), axis=axis)
            for i, weight in enumerate(taps)
        )
    return out


def _filter3(values: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """3x3 correlation with edge replication (small enough to spell out with shifts)."""
    padded = np.pad(values, 1, mode="edge")
    out = np.zeros_like(values)
    height, width = values.shape
    for dy in range(3):
        for dx in range(3):
            if kernel[dy, dx]:
                out += kernel[dy, dx] * padded[dy : dy + height, dx : dx + width]
    return out


def sobel(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return _filter3(grey, _SOBEL_X), _filter3(grey, _SOBEL_X.T)


def canny(grey: np.ndarray, low: float, high: float, sigma: float = 1.4) -> np.ndarray:
    """Canny edges (0/255 uint8) of a 0-255 grey image."""
    gx, gy = sobel(_blur(grey, sigma))
    magnitude = np.hypot(gx, gy)
    thin = _non_maximum_suppression(magnitude, gx, gy)
    return _hysteresis(thin, low, high)


def _non_maximum_suppression(magnitude: np.ndarray, gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """Keep a pixel only where it is the largest of its two neighbours along the gradient."""
    angle = (np.rad2deg(np.arctan2(gy, gx)) + 180.0) % 180.0
    sector = np.zeros(magnitude.shape, dtype=np.int8)  # 0: horizontal gradient
    sector[(angle >= 22.5) & (angle < 67.5)] = 1
    sector[(angle >= 67.5) & (angle < 112.5)] = 2
    sector[(angle >= 112.5) & (angle < 157.5)] = 3
    padded = np.pad(magnitude, 1)
    height, width = magnitude.shape

    def shifted(dy: int, dx: int) -> np.ndarray:
        return padded[1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width]

    # neighbour offsets (dy, dx) across the edge for each gradient direction (y points down)
    pairs = {
        0: ((0, -1), (0, 1)),
        1: ((-1, -1), (1, 1)),
        2: ((-1, 0), (1, 0)),
        3: ((-1, 1), (1, -1)),
    }
    keep = np.zeros(magnitude.shape, dtype=bool)
    for index, (first, second) in pairs.items():
        here = sector == index
        is_max = (magnitude >= shifted(*first)) & (magnitude >= shifted(*second))
        keep |= here & is_max
    return np.where(keep, magnitude, 0.0)


def _hysteresis(thin: np.ndarray, low: float, high: float) -> np.ndarray:
    """Strong edges (>= high) plus the weak ones (>= low) 8-connected to a strong one.

    A flood fill from the strong pixels through the weak ones: edge pixels after suppression are
    a small share of the image, so a Python stack over them stays fast without OpenCV/SciPy.
    """
    strong = thin >= max(high, 1e-6)
    candidate = thin >= max(low, 1e-6)
    out = np.zeros(thin.shape, dtype=bool)
    height, width = thin.shape
    stack = list(zip(*np.nonzero(strong), strict=True))
    for y, x in stack:
        out[y, x] = True
    while stack:
        y, x = stack.pop()
        for ny in range(max(y - 1, 0), min(y + 2, height)):
            for nx in range(max(x - 1, 0), min(x + 2, width)):
                if candidate[ny, nx] and not out[ny, nx]:
                    out[ny, nx] = True
                    stack.append((ny, nx))
    return (out * 255).astype(np.uint8)


def soft_edges(grey: np.ndarray) -> np.ndarray:
    """Soft edge strength (0-255): gradient magnitude at three scales, each normalised, averaged,
    then a gamma below 1 so faint edges stay visible (HED maps are soft and wide)."""
    total = np.zeros_like(grey)
    for sigma in (1.0, 2.0, 4.0):
        gx, gy = sobel(_blur(grey, sigma))
        magnitude = np.hypot(gx, gy)
        peak = float(magnitude.max())
        if peak > 0:
            total += magnitude / peak
    total /= 3.0
    return (np.clip(total, 0.0, 1.0) ** 0.7 * 255).round().astype(np.uint8)


def lineart(grey: np.ndarray) -> np.ndarray:
    """White-on-black lines from dark lines on a light picture: how much darker each pixel is
    than its surroundings (a wide blur), stretched so the darkest stroke is white."""
    background = _blur(grey, 6.0)
    darker = np.clip(background - _blur(grey, 0.7), 0.0, None)
    peak = float(darker.max())
    if peak <= 0:
        return np.zeros(grey.shape, dtype=np.uint8)
    lines = np.clip(darker / peak * 1.5, 0.0, 1.0)
    lines[lines < 0.08] = 0.0  # paper texture and JPEG noise are not lines
    return (lines * 255).round().astype(np.uint8)


def scribble(grey: np.ndarray) -> np.ndarray:
    """The strokes binarised to white on black; a light picture (dark strokes on paper) is
    inverted first, so either way of drawing works."""
    values = 255.0 - grey if float(grey.mean()) > 127.5 else grey
    return np.where(values >= 128.0, 255, 0).astype(np.uint8)
