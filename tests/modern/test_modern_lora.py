"""LoRAs on SD3 and FLUX.1 through the real engine (diffusers' loaders), offline."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.api import LoraRef
from engine.events import Failed, Result
from engine.library.probe import probe_path
from tests.helpers.pictures import assert_same_picture
from tests.modern.conftest import pixels, request


def run(engine, req):
    return engine.run(req, timeout=300)


@pytest.fixture(scope="module")
def loras(modern_models, tmp_path_factory):
    from tests.helpers.tiny_modern import build_transformer_lora

    folder = tmp_path_factory.mktemp("modern-loras")
    return {
        name: build_transformer_lora(modern_models[name], folder / f"{name}-lora.safetensors")
        for name in ("sd3", "flux")
    }


@pytest.mark.parametrize("model", ["sd3", "flux"])
def test_a_lora_changes_the_picture_and_leaves_the_cached_model_clean(
    modern_engine, modern_models, loras, model
):
    plain = run(modern_engine, request(modern_models[model]))
    styled = run(modern_engine, request(modern_models[model], loras=(LoraRef(str(loras[model])),)))
    assert isinstance(styled, Result), styled
    # tiny SD3's pictures depend little on its transformer: any change is the LoRA's
    assert not np.array_equal(pixels(styled), pixels(plain))
    off = LoraRef(str(loras[model]), weight=0.0)
    assert np.array_equal(
        pixels(run(modern_engine, request(modern_models[model], loras=(off,)))), pixels(plain)
    )
    # the adapter was removed again: the next job is the base model, pixel for pixel
    assert np.array_equal(pixels(run(modern_engine, request(modern_models[model]))), pixels(plain))
    assert styled.metadata[0]["loras"][0]["path"] == str(loras[model])


def test_flux_lora_equals_diffusers_load_lora_weights(modern_engine, modern_models, loras):
    import diffusers

    ours = run(
        modern_engine,
        request(modern_models["flux"], loras=(LoraRef(str(loras["flux"]), weight=0.7),)),
    )
    pipe = diffusers.FluxPipeline.from_pretrained(
        str(modern_models["flux"]), local_files_only=True, dtype=torch.float32
    )
    pipe.set_progress_bar_config(disable=True)
    pipe.load_lora_weights(str(loras["flux"]), adapter_name="style")
    pipe.set_adapters(["style"], adapter_weights=[0.7])
    theirs = pipe(
        prompt="a photo of a cat",
        num_inference_steps=2,
        guidance_scale=4.0,
        height=32,
        width=32,
        max_sequence_length=512,
        generator=[torch.Generator("cpu").manual_seed(7)],
    ).images
    assert_same_picture(pixels(ours), np.asarray(theirs[0]))


def test_loras_are_probed_with_their_family(loras, tmp_path):
    from tests.library.builders import write_stripped

    assert (probe_path(loras["flux"]).kind, probe_path(loras["flux"]).base) == ("lora", "flux")
    assert probe_path(loras["sd3"]).base == "sd3"
    kohya_flux = write_stripped(
        tmp_path / "k.safetensors",
        {"lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight": (4, 3072)},
    )
    assert (probe_path(kohya_flux).base, probe_path(kohya_flux).status) == ("flux", "ok")
    flux2_dev = write_stripped(
        tmp_path / "f2.safetensors",
        {"double_blocks.0.img_attn.qkv.lora_A.weight": (16, 6144)},
    )
    assert probe_path(flux2_dev).base == "flux2"
    joint_only = "transformer.transformer_blocks.0.attn.to_q.lora_A.weight"
    for width, base in ((1536, "sd3"), (2432, "sd3"), (3072, "flux"), (6144, "flux2")):
        path = write_stripped(tmp_path / f"j{width}.safetensors", {joint_only: (4, width)})
        assert probe_path(path).base == base, width


def test_a_lora_for_another_family_is_refused_by_name(modern_engine, modern_models, loras):
    wrong = run(modern_engine, request(modern_models["sd3"], loras=(LoraRef(str(loras["flux"])),)))
    assert isinstance(wrong, Failed)
    assert "is for FLUX; the model is SD3" in wrong.message
    assert isinstance(run(modern_engine, request(modern_models["sd3"])), Result)  # still serving
