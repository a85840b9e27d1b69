"""Training tests share the tiny GAN/VAE configs and helpers kept beside the family tests."""

from __future__ import annotations

import sys
from pathlib import Path

FAMILY_TESTS = str(Path(__file__).resolve().parents[1] / "families")
if FAMILY_TESTS not in sys.path:
    sys.path.insert(0, FAMILY_TESTS)
