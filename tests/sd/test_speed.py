"""Speed options (engine/sd/speed.py) and the dtype keep the pictures within the recorded
tolerance (docs/benchmarks.md, "Issue 15 speed"); torch.compile falls back cleanly."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from engine.api import GenerationRequest
from engine.events import Result
from engine.sd import speed
from tests.sd.conftest import RUNTIME

#: recorded tolerances on the tiny pipeline (64x64, 3 Euler steps)
CHANNELS_LAST_MAX_DIFF = 2  # 8-bit levels: another convolution algorithm, same maths
BF16_MIN_PSNR_DB = 25.0


def picture(model, monkeypatch, precision: str = "fp32", **env) -> np.ndarray:
    from engine.services import Services
    from engine.worker import Engine

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    req = GenerationRequest(
        prompt="a red apple",
        model=str(model),
        steps=3,
        width=64,
        height=64,
        seed=11,
        sampler="Euler",
        runtime=RUNTIME.replace(precision=precision),
    )
    engine = Engine(services=Services())  # a fresh cache: the plan is applied at load
    try:
        result = engine.run(req, timeout=300)
    finally:
        assert engine.shutdown(timeout=60)
    assert isinstance(result, Result), result
    assert result.info["dtype"] == precision
    return np.asarray(result.images[0]).astype(np.int16)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a - b) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def test_channels_last_keeps_the_picture(tiny_models, monkeypatch):
    plain = picture(tiny_models["sd1"], monkeypatch, EASEL_CHANNELS_LAST="0")
    fast = picture(tiny_models["sd1"], monkeypatch, EASEL_CHANNELS_LAST="1")
    assert np.abs(plain - fast).max() <= CHANNELS_LAST_MAX_DIFF


def test_bf16_stays_within_the_recorded_noise(tiny_models, monkeypatch):
    from engine import devices

    reference = picture(tiny_models["sd1"], monkeypatch)
    devices.cpu_has_native_bf16.cache_clear()
    try:  # the policy allows bf16 on any CPU with this override (emulated where not native)
        low = picture(tiny_models["sd1"], monkeypatch, "bf16", EASEL_CPU_BF16="1")
    finally:
        monkeypatch.delenv("EASEL_CPU_BF16")
        devices.cpu_has_native_bf16.cache_clear()
    value = psnr(reference, low)
    assert BF16_MIN_PSNR_DB <= value < math.inf, value  # changed, but only by rounding noise


def test_the_default_plan_and_its_overrides(monkeypatch):
    for name in ("EASEL_CHANNELS_LAST", "EASEL_FUSE_QKV", "EASEL_TORCH_COMPILE"):
        monkeypatch.delenv(name, raising=False)
    plan = speed.plan_for("cpu", torch.bfloat16)
    assert (plan.channels_last, plan.fuse_qkv, plan.compile_unet) == (True, False, False)
    assert plan.describe() == "channels_last"
    monkeypatch.setenv("EASEL_CHANNELS_LAST", "0")
    monkeypatch.setenv("EASEL_TORCH_COMPILE", "1")
    plan = speed.plan_for("cpu", torch.bfloat16)
    assert (plan.channels_last, plan.compile_unet) == (False, True)


def _module() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))


def test_compile_that_cannot_start_leaves_the_module_eager():
    module, x = _module(), torch.randn(3, 4)
    expected = module(x)

    def broken_compiler(fn):
        raise RuntimeError("no C++ compiler on this machine")

    speed.compile_with_fallback(module, compiler=broken_compiler)
    assert torch.equal(module(x), expected)


def test_compile_that_fails_at_the_first_call_falls_back_for_good():
    module, x = _module(), torch.randn(3, 4)
    expected = module(x)
    calls = []

    def failing_compiler(fn):
        def compiled(*args, **kwargs):
            calls.append(1)
            raise RuntimeError("inductor: lowering failed")

        return compiled

    speed.compile_with_fallback(module, compiler=failing_compiler)
    assert torch.equal(module(x), expected)  # the job goes on, eagerly
    assert torch.equal(module(x), expected)
    assert len(calls) == 1  # not retried on every call
    assert "lowering failed" in module._easel_compile_error


def test_the_plan_is_applied_once_per_pipeline():
    holder = type("Pipe", (), {"unet": _module(), "vae": None})()
    first = speed.apply_speed_plan(holder, speed.SpeedPlan(channels_last=False))
    again = speed.apply_speed_plan(holder, speed.SpeedPlan(channels_last=True, fuse_qkv=True))
    assert again is first


@pytest.mark.parametrize("name", ["plain", "channels_last"])
def test_vae_preparation_keeps_the_decode(tiny_models, name):
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(str(tiny_models["sd1"] / "vae")).eval()
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = vae.decode(latents).sample
        speed.prepare_vae(vae, speed.SpeedPlan(channels_last=name == "channels_last"))
        got = vae.decode(latents).sample
    assert torch.allclose(got, expected, atol=1e-4)
