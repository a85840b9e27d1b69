"""Comparing pictures made by two separately loaded copies of the same model."""

from __future__ import annotations

import numpy as np


def assert_same_picture(ours, theirs, *, max_off_fraction: float = 0.005) -> None:
    """`ours` and `theirs` are the same picture but for CPU rounding: no value more than one
    8-bit level apart, and at most `max_off_fraction` of them off at all.

    Why not exact: oneDNN/MKL kernels round differently (by ~1e-7) for weights at other memory
    alignments, and two loaders place the same weights differently (a file mapping, a copy, a
    channels_last copy), so now and then a value on a rounding boundary lands one level over
    (seen: 2 of 12,288 values on an AMD EPYC, none on the Xeons). A wrong setting, scheduler or
    code path moves thousands of values by many levels, which this still catches."""
    a = np.asarray(ours).astype(np.int16)
    b = np.asarray(theirs).astype(np.int16)
    assert a.shape == b.shape, f"sizes differ: {a.shape} vs {b.shape}"
    diff = np.abs(a - b)
    off = float((diff > 0).mean())
    assert diff.max() <= 1 and off <= max_off_fraction, (
        f"pictures differ: {off:.2%} of values off, by up to {int(diff.max())} levels"
    )
