"""Fixtures for the understanding/judging tests: real photo crops and the real FID network.

Images are crops of scikit-learn's two sample photos (china.jpg, flower.jpg, shipped with the
package, no network), saved in several sizes and modes, so metrics see real image statistics.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import tqdm
from PIL import Image

# transformers shows tqdm bars while loading weights; tqdm's monitor thread would outlive the
# test that loaded the model and trip the leaked-thread check
tqdm.tqdm.monitor_interval = 0

MODES = ("RGB", "L", "RGBA", "P", "I;16", "RGB")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # The build machine is shared by several engineers: one torch thread keeps runs predictable.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def sample_photos() -> dict[str, np.ndarray]:
    from sklearn.datasets import load_sample_images

    data = load_sample_images()
    return {Path(name).stem: image for name, image in zip(data.filenames, data.images, strict=True)}


def save_crops(
    photo: np.ndarray, folder: Path, count: int, *, seed: int, modes=MODES, prefix: str = "img"
) -> list[Path]:
    """`count` random crops of `photo`, of different sizes, saved in different modes/formats."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        side = int(rng.integers(96, 240))
        top = int(rng.integers(0, photo.shape[0] - side))
        left = int(rng.integers(0, photo.shape[1] - side))
        crop = Image.fromarray(photo[top : top + side, left : left + side + i * 7])
        mode = modes[i % len(modes)]
        path = folder / f"{prefix}{i:02d}.png"
        if mode == "I;16":
            grey = np.asarray(crop.convert("L"), dtype=np.uint16) * 257
            Image.fromarray(grey).save(path)  # a 16-bit greyscale PNG
        elif mode == "RGB" and i % 2:
            path = path.with_suffix(".jpg")
            crop.save(path, quality=92)
        else:
            crop.convert(mode).save(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="session")
def photo_sets(sample_photos, tmp_path_factory) -> dict[str, Path]:
    """Folders of crops: `china` (6), `china2` (6 other crops), `flower` (6)."""
    root = tmp_path_factory.mktemp("photo-sets")
    save_crops(sample_photos["china"], root / "china", 6, seed=1)
    save_crops(sample_photos["china"], root / "china2", 6, seed=2)
    save_crops(sample_photos["flower"], root / "flower", 6, seed=3)
    return {name: root / name for name in ("china", "china2", "flower")}


@pytest.fixture(scope="session")
def inception():
    from engine.metrics.fid import load_inception

    return load_inception("cpu")


@pytest.fixture(scope="session")
def photo_features(inception, photo_sets) -> dict[str, np.ndarray]:
    """Real FID Inception features of every photo set (computed once per test session)."""
    from engine.metrics.fid import extract_features
    from engine.metrics.images import list_images

    return {
        name: extract_features(inception, list_images([folder]), batch_size=4)
        for name, folder in photo_sets.items()
    }
