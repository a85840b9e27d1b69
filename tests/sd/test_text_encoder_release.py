"""Text encoders freed after encoding when RAM is short (engine/sd/text_encoder_release.py):
the pictures stay the same, the next job reads the weights back, the cache stays consistent."""

from __future__ import annotations

import numpy as np
import pytest

from engine.api import GenerationRequest, LoraRef, Offload
from engine.events import Result
from engine.sd import text_encoder_release
from engine.sd.memory_plan import GIB, choose_offload
from tests.sd.conftest import RUNTIME


def request(model, **overrides) -> GenerationRequest:
    fields = dict(
        prompt="a red apple",
        negative_prompt="blurry",
        model=str(model),
        steps=2,
        width=64,
        height=64,
        seed=5,
        sampler="Euler",
        runtime=RUNTIME,
    )
    return GenerationRequest(**{**fields, **overrides})


def run(engine, req) -> np.ndarray:
    result = engine.run(req, timeout=300)
    assert isinstance(result, Result), result
    return np.asarray(result.images[0])


@pytest.fixture
def fresh_engine(tmp_path, monkeypatch):
    from engine.services import Services
    from engine.worker import Engine

    monkeypatch.setenv("EASEL_DATA_DIR", str(tmp_path / "data"))
    services = Services()
    engine = Engine(services=services)
    yield engine, services
    assert engine.shutdown(timeout=60)


def cached_pipe(services):
    (key,) = services.cache.keys()
    return services.cache._entries[key].model


def test_the_plan_frees_the_text_encoder_only_when_ram_is_short():
    model = {"unet": 2 * GIB, "text_encoder": GIB // 4}
    short = choose_offload(Offload.AUTO, "cpu", model, vram_bytes=None, ram_bytes=4 * GIB)
    ample = choose_offload(Offload.AUTO, "cpu", model, vram_bytes=None, ram_bytes=16 * GIB)
    unknown = choose_offload(Offload.AUTO, "cpu", model, vram_bytes=None, ram_bytes=None)
    assert short.free_text_encoder and "text encoder freed" in short.why
    assert not ample.free_text_encoder and not unknown.free_text_encoder


@pytest.mark.parametrize("model", ["sd1", "sdxl"])
def test_freed_encoders_give_the_same_pictures_job_after_job(
    tiny_models, fresh_engine, monkeypatch, model
):
    engine, services = fresh_engine
    monkeypatch.setenv("EASEL_FREE_TEXT_ENCODER", "0")
    kept = run(engine, request(tiny_models[model]))
    other_kept = run(engine, request(tiny_models[model], prompt="a green pear", seed=6))
    services.cache.clear()
    monkeypatch.setenv("EASEL_FREE_TEXT_ENCODER", "1")
    freed = run(engine, request(tiny_models[model]))
    pipe = cached_pipe(services)
    names = ("text_encoder", "text_encoder_2")
    encoders = [getattr(pipe, n, None) for n in names if getattr(pipe, n, None) is not None]
    assert all(text_encoder_release.is_released(e) for e in encoders)
    assert all(p.numel() == 0 for e in encoders for p in e.parameters())
    size_freed, loads = services.cache.used_bytes, services.cache.loads
    # the second job reads the weights back from the cache file and frees them again
    other_freed = run(engine, request(tiny_models[model], prompt="a green pear", seed=6))
    assert services.cache.loads == loads  # no reload of the pipeline
    assert np.array_equal(kept, freed)
    assert np.array_equal(other_kept, other_freed)
    assert not np.array_equal(kept, other_kept)
    assert services.cache.used_bytes == size_freed  # what is held, measured again on release


def test_a_lora_on_a_freed_text_encoder(tiny_models, fresh_engine, monkeypatch):
    engine, services = fresh_engine
    lora = (LoraRef(str(tiny_models["lora"]), 1.0),)
    monkeypatch.setenv("EASEL_FREE_TEXT_ENCODER", "0")
    kept = run(engine, request(tiny_models["sd1"], loras=lora))
    services.cache.clear()
    monkeypatch.setenv("EASEL_FREE_TEXT_ENCODER", "1")
    run(engine, request(tiny_models["sd1"]))  # freed without a LoRA
    # the next job injects the LoRA around the freed layers, then its call reads them back
    assert np.array_equal(kept, run(engine, request(tiny_models["sd1"], loras=lora)))
    plain = run(engine, request(tiny_models["sd1"]))
    services.cache.clear()
    monkeypatch.setenv("EASEL_FREE_TEXT_ENCODER", "0")
    assert np.array_equal(plain, run(engine, request(tiny_models["sd1"])))


def test_the_weights_file_goes_with_the_model(tiny_models, fresh_engine, monkeypatch, tmp_path):
    import gc

    engine, services = fresh_engine
    monkeypatch.setenv("EASEL_FREE_TEXT_ENCODER", "1")
    run(engine, request(tiny_models["sd1"]))
    files = list((tmp_path / "data").rglob("text-encoders/*.safetensors"))
    assert len(files) == 1
    services.cache.clear()
    gc.collect()
    assert not files[0].exists()
