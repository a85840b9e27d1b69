"""The model cache: LRU under RAM and VRAM budgets, in-use models never evicted."""

from __future__ import annotations

import time

from torch import nn

from engine.library.cache import ModelCache, bytes_by_device

MB = 1024 * 1024


def _linear(megabytes: float, device: str = "cpu") -> nn.Module:
    side = int((megabytes * MB / 4) ** 0.5)
    return nn.Linear(side, side, bias=False, device=device)


def test_switching_back_to_a_cached_model_costs_no_reload():
    cache = ModelCache(ram_budget_bytes=100 * MB)
    with cache.use("a", lambda: _linear(1)) as first:
        pass
    with cache.use("b", lambda: _linear(1)):
        pass
    started = time.perf_counter()
    with cache.use("a", lambda: _linear(1)) as again:
        assert again is first
    assert time.perf_counter() - started < 0.2
    assert cache.loads == 2


def test_least_recently_used_goes_first_and_in_use_models_stay():
    cache = ModelCache(ram_budget_bytes=int(2.5 * MB))
    with cache.use("a", lambda: _linear(1)):
        pass
    with cache.use("b", lambda: _linear(1)):
        pass
    with cache.use("a", lambda: _linear(1)):  # a is now more recent than b
        pass
    with cache.use("c", lambda: _linear(1)):
        pass
    assert cache.keys() == ["a", "c"]
    with cache.use("a", lambda: _linear(1)):
        with cache.use("d", lambda: _linear(2)):
            # a is in use and d is newest: both stay although together they exceed the budget
            assert set(cache.keys()) == {"a", "d"}


def test_vram_budget_evicts_only_what_sits_on_the_accelerator():
    # The meta device stands in for the GPU here: its bytes are counted as VRAM.
    cache = ModelCache(
        ram_budget_bytes=100 * MB, vram_budget_bytes=int(2.5 * MB), accelerator="meta"
    )
    with cache.use("cpu-model", lambda: _linear(1)):
        pass
    with cache.use("gpu-1", lambda: _linear(1, "meta")):
        pass
    with cache.use("gpu-2", lambda: _linear(1, "meta")):
        pass
    assert cache.used_vram_bytes == 2 * bytes_by_device(_linear(1))["cpu"]
    with cache.use("gpu-3", lambda: _linear(1, "meta")):
        pass
    assert cache.keys() == ["cpu-model", "gpu-2", "gpu-3"]


def test_sizes_are_measured_again_when_a_job_moves_a_model():
    cache = ModelCache(
        ram_budget_bytes=100 * MB, vram_budget_bytes=int(1.5 * MB), accelerator="meta"
    )
    with cache.use("old", lambda: _linear(1, "meta")):
        pass
    with cache.use("moved", lambda: _linear(1)) as model:
        model.to("meta")  # what a job does when it puts a pipeline on the GPU
    assert cache.keys() == ["moved"] and cache.used_bytes == 0


def test_spandrel_descriptors_are_measured(tmp_path):
    from safetensors.torch import save_file

    from engine.library.upscalers import load_upscaler

    from .builders import tiny_esrgan

    net = tiny_esrgan()
    save_file(net.state_dict(), tmp_path / "up.safetensors")
    descriptor = load_upscaler(tmp_path / "up.safetensors")
    expected = sum(p.numel() * 4 for p in net.parameters())
    assert bytes_by_device(descriptor)["cpu"] == expected


def test_room_is_made_before_a_large_model_loads():
    cache = ModelCache(ram_budget_bytes=10 * MB)
    for key in ("old", "newer"):
        with cache.use(key, lambda: _linear(4)):
            pass
    with cache.use("in-use", lambda: _linear(1)):
        cache.make_room(5 * MB)  # a 5 MB model is next: the oldest unused model goes first
        assert cache.keys() == ["newer", "in-use"]
        cache.make_room(9.5 * MB)  # more than fits beside anything: all but the one in use
        assert cache.keys() == ["in-use"]
