"""Tiny SD 1.x / SD 1.x-inpaint / SDXL pipelines and a LoRA, built once per test session."""

from __future__ import annotations

import pytest
import torch

from engine.api import RuntimeOptions

#: every SD test runs on one CPU thread in fp32: the machine is shared, and fp32 is exact
RUNTIME = RuntimeOptions(device="cpu", precision="fp32", cpu_threads=1)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    from tests.helpers.tiny_sd import build_lora, build_sd1, build_sdxl

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("tiny-sd")
    models = {
        "sd1": build_sd1(root / "tiny-sd1"),
        "inpaint": build_sd1(root / "tiny-sd1-inpaint", inpaint=True),
        "sdxl": build_sdxl(root / "tiny-sdxl"),
    }
    models["lora"] = build_lora(models["sd1"], root / "loras" / "tiny-lora.safetensors")
    return models


@pytest.fixture(scope="module")
def services():
    """One model cache per test module: each pipeline loads once, as in a running app."""
    from engine.services import Services

    return Services()


@pytest.fixture
def sd_engine(services):
    from engine.worker import Engine

    eng = Engine(services=services)
    yield eng
    assert eng.shutdown(timeout=60), "engine worker did not stop"
