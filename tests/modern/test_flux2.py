"""FLUX.2 (klein and dev): probe, load and every mode through the real engine, offline, on a
tiny randomly initialised klein pipeline saved as a folder and as a transformer file."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from engine.events import Failed, Result
from engine.library.probe import probe_path
from tests.helpers.pictures import assert_same_picture
from tests.library.builders import write_stripped
from tests.modern.conftest import pixels, request


def run(engine, req):
    return engine.run(req, timeout=300)


@pytest.fixture(scope="module")
def klein(tmp_path_factory):
    from tests.helpers.tiny_flux2 import build_flux2_dev, build_klein
    from tests.helpers.tiny_modern import save_gguf_transformer, save_transformer_file

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("tiny-flux2")
    models = {
        "klein": build_klein(root / "tiny-klein"),
        "base": build_klein(root / "tiny-klein-base", distilled=False),
        "dev": build_flux2_dev(root / "tiny-flux2-dev"),
    }
    files = root / "files"
    files.mkdir()
    shutil.copytree(models["klein"], files / "klein-components")
    models["file"] = save_transformer_file(models["klein"], files / "klein-t.safetensors")
    models["gguf"] = save_gguf_transformer(models["klein"], files / "klein-Q8_0.gguf")
    inputs = root / "inputs"  # FLUX.2 takes reference pictures of 64 px and more
    inputs.mkdir()
    ramp = np.linspace(0, 255, 64, dtype=np.uint8)
    rgb = np.dstack(
        [np.tile(ramp, (64, 1)), np.tile(ramp[:, None], (1, 64)), np.full((64, 64), 90, np.uint8)]
    )
    Image.fromarray(rgb).save(inputs / "init.png")
    Image.fromarray(rgb).resize((32, 32)).save(inputs / "small.png")
    mask = np.zeros((64, 64), np.uint8)
    mask[:, 32:] = 255
    Image.fromarray(mask).save(inputs / "mask.png")
    models["inputs"] = inputs
    return models


def _klein_pipeline(folder, cls="Flux2KleinPipeline"):
    import diffusers

    pipe = getattr(diffusers, cls).from_pretrained(
        str(folder), local_files_only=True, dtype=torch.float32
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _gen(seed=7):
    return [torch.Generator("cpu").manual_seed(seed)]


def test_folders_are_probed_as_klein_and_klein_base(klein):
    distilled = probe_path(klein["klein"])
    assert (distilled.base, distilled.variant, distilled.status) == ("flux2", "klein", "ok")
    assert probe_path(klein["base"]).variant == "klein-base"
    single = probe_path(klein["file"])
    assert (single.base, single.variant, single.status) == ("flux2", "klein", "ok")
    assert single.details["key_layout"] == "diffusers"
    assert (single.details["double_blocks"], single.details["single_blocks"]) == (1, 1)


def flux2_original_shapes(*, guidance: bool, text_width: int, double: int, single: int) -> dict:
    """FLUX.2 in Black Forest Labs' key layout (real names, real widths)."""
    width = 6144 if guidance else 3072
    shapes = {
        "img_in.weight": (width, 128),
        "txt_in.weight": (width, text_width),
        "double_stream_modulation_img.lin.weight": (6 * 2 * width, width),
        "single_stream_modulation.lin.weight": (3 * width, width),
        "final_layer.linear.weight": (128, width),
    }
    if guidance:
        shapes["guidance_in.in_layer.weight"] = (width, 256)
    for i in range(double):
        shapes[f"double_blocks.{i}.img_attn.qkv.weight"] = (3 * width, width)
    for i in range(single):
        shapes[f"single_blocks.{i}.linear1.weight"] = (9 * width, width)
    return shapes


def test_original_layout_files_name_dev_klein_and_klein_base(tmp_path):
    dev = probe_path(
        write_stripped(
            tmp_path / "flux2-dev.safetensors",
            flux2_original_shapes(guidance=True, text_width=15360, double=8, single=48),
        )
    )
    assert (dev.base, dev.variant, dev.status) == ("flux2", "dev", "ok")
    assert dev.details["text_width"] == 15360 and dev.details["key_layout"] == "original"
    shapes = flux2_original_shapes(guidance=False, text_width=7680, double=5, single=20)
    four_b = probe_path(write_stripped(tmp_path / "k.safetensors", shapes))
    assert (four_b.variant, four_b.details["single_blocks"]) == ("klein", 20)
    base = probe_path(
        write_stripped(
            tmp_path / "kb.safetensors",
            shapes,
            metadata={"modelspec.title": "FLUX.2 [klein] Base 4B"},
        )
    )
    assert base.variant == "klein-base"


def test_klein_equals_a_plain_diffusers_call(modern_engine, klein):
    req = request(klein["klein"], steps=3, guidance_scale=1.0)
    ours = run(modern_engine, req)
    assert isinstance(ours, Result), ours
    theirs = _klein_pipeline(klein["klein"])(
        prompt=req.prompt,
        num_inference_steps=3,
        guidance_scale=1.0,
        height=32,
        width=32,
        generator=_gen(),
    ).images
    assert_same_picture(pixels(ours), np.asarray(theirs[0]))
    assert ours.info["base_model"] == "flux2" and ours.info["guidance_kind"] == "none"
    again = run(modern_engine, req)
    assert np.array_equal(pixels(ours), pixels(again))
    other = run(modern_engine, request(klein["klein"], steps=3, seed=8))
    assert not np.array_equal(pixels(ours), pixels(other))


def test_flux2_dev_takes_distilled_guidance_and_equals_diffusers(modern_engine, klein):
    assert probe_path(klein["dev"]).variant == "dev"
    ours = run(modern_engine, request(klein["dev"], guidance_scale=4.0))
    assert isinstance(ours, Result), ours
    theirs = _klein_pipeline(klein["dev"], "Flux2Pipeline")(
        prompt="a photo of a cat",
        num_inference_steps=2,
        guidance_scale=4.0,
        height=32,
        width=32,
        generator=_gen(),
    ).images
    assert_same_picture(pixels(ours), np.asarray(theirs[0]))
    assert ours.info["guidance_kind"] == "distilled"
    assert any("negative prompt" in note for note in ours.info["notes"])
    stronger = run(modern_engine, request(klein["dev"], guidance_scale=8.0))
    assert not np.array_equal(pixels(ours), pixels(stronger))  # guidance is a model input


def test_reference_edit_and_inpaint(modern_engine, klein):
    inputs = klein["inputs"]
    edit = request(
        klein["klein"], mode="img2img", init_image=str(inputs / "init.png"), width=64, height=64
    )
    ours = run(modern_engine, edit)
    assert isinstance(ours, Result), ours
    theirs = _klein_pipeline(klein["klein"])(
        prompt=edit.prompt,
        image=Image.open(inputs / "init.png").convert("RGB"),
        num_inference_steps=2,
        guidance_scale=4.0,
        height=64,
        width=64,
        generator=_gen(),
    ).images
    assert_same_picture(pixels(ours), np.asarray(theirs[0]))
    plain = run(modern_engine, request(klein["klein"], width=64, height=64))
    assert not np.array_equal(pixels(ours), pixels(plain))  # the reference steers the result
    painted = run(
        modern_engine,
        request(
            klein["klein"],
            mode="inpaint",
            init_image=str(inputs / "init.png"),
            mask_image=str(inputs / "mask.png"),
            width=64,
            height=64,
            strength=0.9,
        ),
    )
    assert isinstance(painted, Result), painted
    assert painted.images[0].size == (64, 64) and painted.metadata[0]["mode"] == "inpaint"


def test_klein_base_uses_cfg_with_the_negative_prompt(modern_engine, klein):
    with_negative = run(modern_engine, request(klein["base"], guidance_scale=4.0))
    assert with_negative.info["guidance_kind"] == "cfg"
    without = run(modern_engine, request(klein["base"], guidance_scale=4.0, negative_prompt=""))
    assert not np.array_equal(pixels(with_negative), pixels(without))
    pipe = _klein_pipeline(klein["base"])
    negative, _ = pipe.encode_prompt(prompt="blurry, low quality", device=torch.device("cpu"))
    theirs = pipe(
        prompt="a photo of a cat",
        negative_prompt_embeds=negative,
        num_inference_steps=2,
        guidance_scale=4.0,
        height=32,
        width=32,
        generator=_gen(),
    ).images
    assert np.array_equal(pixels(with_negative), np.asarray(theirs[0]))


def test_model_defaults_and_metadata_round_trip(modern_engine, klein, tmp_path):
    from engine.api import GenerationRequest
    from engine.metadata import read_generation_metadata, save_png_with_metadata

    left = run(modern_engine, request(klein["klein"], extras={"model_defaults": True}))
    used = left.metadata[0]
    assert (used["steps"], used["guidance_scale"], used["sampler"]) == (4, 1.0, "Euler")
    base = run(modern_engine, request(klein["base"], extras={"model_defaults": ["steps"]}))
    assert base.metadata[0]["steps"] == 50
    path = save_png_with_metadata(left.images[0], tmp_path / "klein.png", used)
    again = run(modern_engine, read_generation_metadata(path))
    assert np.array_equal(pixels(again), pixels(left))
    assert np.array_equal(
        pixels(run(modern_engine, GenerationRequest.from_dict(used))), pixels(left)
    )


@pytest.mark.parametrize("kind", ["file", "gguf"])
def test_a_transformer_file_takes_the_rest_from_a_klein_companion(modern_engine, klein, kind):
    folder = run(modern_engine, request(klein["klein"]))
    single = run(modern_engine, request(klein[kind]))
    assert isinstance(single, Result), single
    difference = np.abs(pixels(single) - pixels(folder)).max()
    assert difference == 0 if kind == "file" else difference <= 12  # Q8_0 rounds the weights
    assert single.info["model_variant"] == "klein"
    if kind == "gguf":
        probed = probe_path(klein["gguf"])
        assert (probed.base, probed.variant) == ("flux2", "klein,Q8_0")


def test_bad_input_gets_one_clear_message(modern_engine, klein):
    small = request(klein["klein"], mode="img2img", init_image=str(klein["inputs"] / "small.png"))
    failed = run(modern_engine, small)
    assert isinstance(failed, Failed)
    assert "at least 64 pixels" in failed.message and "32x32" in failed.message
    assert isinstance(run(modern_engine, request(klein["klein"])), Result)  # still serving


def test_a_klein_lora_applies_and_is_removed_after_the_job(modern_engine, klein, tmp_path):
    from engine.api import LoraRef
    from tests.helpers.tiny_modern import build_transformer_lora

    lora = build_transformer_lora(klein["klein"], tmp_path / "klein-lora.safetensors")
    assert probe_path(lora).base == "flux2"
    plain = run(modern_engine, request(klein["klein"]))
    styled = run(modern_engine, request(klein["klein"], loras=(LoraRef(str(lora)),)))
    assert isinstance(styled, Result), styled
    assert not np.array_equal(pixels(styled), pixels(plain))
    assert np.array_equal(pixels(run(modern_engine, request(klein["klein"]))), pixels(plain))
