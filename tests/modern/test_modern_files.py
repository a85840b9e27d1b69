"""The tiny models' files as the library sees them, the memory plan and few-step detection."""

from __future__ import annotations

import pytest

from engine.api import Offload
from engine.errors import ModelError
from engine.library.probe import probe_path
from engine.sd.memory_plan import GIB, choose_offload, component_bytes, model_components


def test_tiny_folders_and_files(modern_models):
    sd3 = probe_path(modern_models["sd3"])
    assert (sd3.base, sd3.layout, sd3.variant, sd3.status) == ("sd3", "diffusers", "1 blocks", "ok")
    assert sd3.details["has_t5"]
    assert probe_path(modern_models["flux"]).variant == "dev"
    assert probe_path(modern_models["schnell"]).variant == "schnell"
    gguf_file = probe_path(modern_models["flux_gguf"])
    assert (gguf_file.variant, gguf_file.details["contents"]) == ("dev,Q8_0", "transformer-only")
    assert probe_path(modern_models["sd3_gguf"]).base == "sd3"
    assert probe_path(modern_models["flux_fp8"]).variant == "dev,fp8"


FLUX_DEV = {"transformer": 23.8 * GIB, "text_encoder_2": 9.5 * GIB, "vae": 0.2 * GIB}


def test_offload_is_chosen_from_the_vram_budget():
    plan = choose_offload(Offload.AUTO, "cuda", FLUX_DEV, vram_bytes=80 * GIB, ram_bytes=None)
    assert plan.offload is Offload.NONE
    plan = choose_offload(Offload.AUTO, "cuda", FLUX_DEV, vram_bytes=32 * GIB, ram_bytes=None)
    assert plan.offload is Offload.MODEL and "largest part does" in plan.why
    plan = choose_offload(Offload.AUTO, "cuda", FLUX_DEV, vram_bytes=12 * GIB, ram_bytes=None)
    assert plan.offload is Offload.SEQUENTIAL
    assert "23.8 GB" in plan.why and "12.0 GB" in plan.why
    # the user's explicit choice stands
    chosen = choose_offload(Offload.NONE, "cuda", FLUX_DEV, vram_bytes=12 * GIB, ram_bytes=None)
    assert chosen.offload is Offload.NONE and chosen.why == "chosen in Settings"
    # offload cannot help the CPU
    cpu = choose_offload(Offload.AUTO, "cpu", FLUX_DEV, vram_bytes=None, ram_bytes=None)
    assert cpu.offload is Offload.NONE


def test_too_little_memory_even_with_offload_says_how_much_is_needed():
    with pytest.raises(ModelError, match=r"needs about 40\.2 GB of memory \(RAM\) to offload to"):
        choose_offload(Offload.AUTO, "cuda", FLUX_DEV, vram_bytes=8 * GIB, ram_bytes=16 * GIB)
    with pytest.raises(ModelError, match=r"about 16\.0 GB is free"):
        choose_offload(Offload.AUTO, "cpu", FLUX_DEV, vram_bytes=None, ram_bytes=16 * GIB)


def test_sizes_are_read_from_headers_in_the_compute_dtype(modern_models):
    from engine.library.resolve import resolve_model

    fp32 = component_bytes(modern_models["flux"], "fp32")
    bf16 = component_bytes(modern_models["flux"], "bf16")
    assert set(fp32) == {"transformer", "text_encoder", "text_encoder_2", "vae"}
    assert all(bf16[k] * 2 == fp32[k] for k in fp32)
    on_disk = sum(f.stat().st_size for f in (modern_models["flux"] / "transformer").iterdir())
    assert abs(fp32["transformer"] - on_disk) < 20_000  # the header and config.json
    sd3 = resolve_model(str(modern_models["sd3"]))
    without_t5 = model_components(sd3, "fp32", skip_t5=True)
    assert "text_encoder_3" in model_components(sd3, "fp32") and "text_encoder_3" not in without_t5
    gguf = model_components(resolve_model(str(modern_models["flux_gguf"])), "fp32")
    assert gguf["checkpoint"] == modern_models["flux_gguf"].stat().st_size  # stays quantised
    assert "vae" in gguf and "transformer" not in gguf  # the companion's other parts


def test_the_chosen_offload_and_why_reach_the_result(modern_engine, modern_models):
    from tests.modern.conftest import request

    result = modern_engine.run(request(modern_models["flux"]), timeout=300)
    assert result.info["offload"] == "none"
    assert "on the cpu" in result.info["offload_reason"]


def test_the_status_bar_stage_names_an_offload():
    model = choose_offload(Offload.AUTO, "cuda", FLUX_DEV, vram_bytes=32 * GIB, ram_bytes=None)
    assert model.loading_stage().startswith("loading model with model offload: 33.5 GB")
    none = choose_offload(Offload.AUTO, "cuda", FLUX_DEV, vram_bytes=80 * GIB, ram_bytes=None)
    assert none.loading_stage() == "loading model"
