"""FLUX.1 control transformers (Canny dev / Depth dev layout: image input 2x the latent width) on
a tiny model saved as a FluxControlPipeline folder, as a transformer file beside a FLUX.1 dev
companion and as a GGUF file, through the real engine with the network cut: equal to plain
diffusers FluxControl* calls, each mode, the control image's effect, bad input, metadata."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from engine.api_control import ControlUnit, ImagePrompt
from engine.events import Failed, Result
from tests.helpers.pictures import assert_same_picture
from tests.modern.conftest import pixels, request

# the engine applies no speed plan to SD3/FLUX pipelines (engine.sd.speed is SD 1.x/SDXL's), so
# the reference pipelines below run as diffusers builds them, as in test_modern_generate.py


def _drawing(kind: str, size: int = 32) -> Image.Image:
    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    if kind == "square":
        draw.rectangle((6, 6, 20, 20), outline="black", width=2)
    else:
        draw.ellipse((10, 8, 28, 26), fill=(30, 30, 30))
    return image


def _save_with_metadata(folder, out_file, metadata: dict):
    from safetensors.torch import load_file, save_file

    weights = {}
    for part in sorted((folder / "transformer").glob("*.safetensors")):
        weights.update(load_file(str(part)))
    save_file(weights, str(out_file), metadata=metadata)
    return out_file


@pytest.fixture(scope="module")
def control(tmp_path_factory):
    from tests.helpers.tiny_modern import (
        build_flux,
        build_flux_control,
        save_gguf_transformer,
        save_transformer_file,
    )

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("flux-control")
    folder = build_flux_control(root / "tiny-flux-canny")
    files = root / "files"  # transformer files with a FLUX.1 dev companion beside them
    files.mkdir()
    build_flux(files / "flux-dev-components")  # the same encoders and VAE (same seed)
    out = {
        "folder": folder,
        "plain": build_flux(root / "tiny-flux-dev"),
        "file": save_transformer_file(folder, files / "flux1-control.safetensors"),
        "gguf": save_gguf_transformer(folder, files / "flux1-control-Q8_0.gguf"),
        "depth_file": _save_with_metadata(
            folder, files / "named.safetensors", {"modelspec.title": "FLUX.1 Depth [dev]"}
        ),
    }
    # a companion whose transformer config leaves out_channels to in_channels, as the bundled
    # resources/configs/flux-dev does: the width must come from the file's tensors
    loose = root / "loose"
    shutil.copytree(files / "flux-dev-components", loose / "components")
    config_file = loose / "components" / "transformer" / "config.json"
    config = json.loads(config_file.read_text())
    config.update(out_channels=None, in_channels=64)
    config_file.write_text(json.dumps(config))
    out["loose_file"] = save_transformer_file(folder, loose / "control.safetensors")
    inputs = root / "inputs"
    inputs.mkdir()
    for kind in ("square", "disc"):
        _drawing(kind).save(inputs / f"{kind}.png")
    _drawing("square", 48).save(inputs / "square-48.png")
    gradient = np.linspace(0, 255, 32, dtype=np.uint8)
    Image.fromarray(np.stack([np.tile(gradient, (32, 1))] * 3, -1)).save(inputs / "init.png")
    mask = np.zeros((32, 32), np.uint8)
    mask[:, 16:] = 255
    Image.fromarray(mask).save(inputs / "mask.png")
    out["inputs"] = inputs
    return out


def _unit(control, picture="square", **fields):
    values = dict(image=str(control["inputs"] / f"{picture}.png"), preprocessor="canny")
    values.update(fields)
    return (ControlUnit(**values),)


def _req(control, model="folder", picture="square", unit=None, **changes):
    units = _unit(control, picture, **(unit or {}))
    return request(control[model], negative_prompt="", control=units, **changes)


def run(engine, req):
    return engine.run(req, timeout=300)


def _canny(control, picture="square"):
    from engine.sd.preprocess import run_preprocessor

    source = Image.open(control["inputs"] / f"{picture}.png").convert("RGB")
    return run_preprocessor("canny", source, None)


def _reference(control, cls_name, **kwargs):
    import diffusers

    pipe = getattr(diffusers, cls_name).from_pretrained(
        str(control["folder"]), local_files_only=True, dtype=torch.float32
    )
    pipe.set_progress_bar_config(disable=True)
    settings = dict(
        prompt="a photo of a cat",
        num_inference_steps=2,
        guidance_scale=4.0,
        height=32,
        width=32,
        max_sequence_length=512,
        generator=[torch.Generator("cpu").manual_seed(7)],
    )
    settings.update(kwargs)
    return np.asarray(pipe(**settings).images[0]).astype(int)


# -- probe ---------------------------------------------------------------------------------------
def test_probe_names_the_control_model_in_every_layout(control):
    from engine.library.probe import probe_path

    folder = probe_path(control["folder"])
    assert (folder.base, folder.variant, folder.status) == ("flux", "control", "ok")
    assert folder.details["pipeline"] == "FluxControlPipeline"
    single = probe_path(control["file"])
    assert (single.variant, single.status, single.details["image_in_channels"]) == (
        "control",
        "ok",
        128,
    )
    gguf = probe_path(control["gguf"])
    assert (gguf.variant, gguf.status) == ("control,Q8_0", "ok")
    assert probe_path(control["depth_file"]).variant == "control-depth"  # its metadata says


# -- equality with diffusers, each mode --------------------------------------------------------
def test_txt2img_equals_a_plain_flux_control_pipeline_call(modern_engine, control, no_network):
    ours = run(modern_engine, _req(control))
    assert isinstance(ours, Result), ours
    theirs = _reference(control, "FluxControlPipeline", control_image=_canny(control))
    assert_same_picture(pixels(ours), theirs)
    assert ours.info["model_variant"] == "control"
    assert (ours.info["guidance_kind"], ours.info["control_kind"]) == ("distilled", "canny")


def test_img2img_and_inpaint_equal_diffusers(modern_engine, control, no_network):
    inputs = control["inputs"]
    init = Image.open(inputs / "init.png").convert("RGB")
    mask = Image.open(inputs / "mask.png").convert("L")
    edit = dict(init_image=str(inputs / "init.png"), strength=0.8)
    img2img = run(modern_engine, _req(control, mode="img2img", **edit))
    theirs = _reference(
        control, "FluxControlImg2ImgPipeline", image=init, control_image=_canny(control),
        strength=0.8,
    )  # fmt: skip
    assert_same_picture(pixels(img2img), theirs)
    inpaint = run(
        modern_engine, _req(control, mode="inpaint", mask_image=str(inputs / "mask.png"), **edit)
    )
    theirs = _reference(
        control, "FluxControlInpaintPipeline", image=init, mask_image=mask,
        control_image=_canny(control), strength=0.8,
    )  # fmt: skip
    assert_same_picture(pixels(inpaint), theirs)
    assert inpaint.metadata[0]["mode"] == "inpaint"


def test_seed_and_control_image_decide_the_picture(modern_engine, control):
    first = run(modern_engine, _req(control))
    assert np.array_equal(pixels(first), pixels(run(modern_engine, _req(control))))
    assert not np.array_equal(pixels(first), pixels(run(modern_engine, _req(control, seed=8))))
    disc = run(modern_engine, _req(control, picture="disc"))
    assert not np.array_equal(pixels(first), pixels(disc))
    # "none": the picture is taken as a ready map, so it differs from its canny edges
    raw = run(modern_engine, _req(control, unit={"preprocessor": "none"}))
    assert not np.array_equal(pixels(first), pixels(raw))
    batch = run(modern_engine, _req(control, batch_size=2))
    assert [m["seed"] for m in batch.metadata] == [7, 8]
    assert np.abs(pixels(batch, 0) - pixels(first)).max() <= 2


def test_a_control_image_of_another_size_is_resized_with_a_notice(modern_engine, control):
    result = run(modern_engine, _req(control, picture="square-48"))
    assert isinstance(result, Result), result
    assert any("resized to 32x32" in n for n in result.info["notices"])


# -- files -------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", ["file", "loose_file", "gguf"])
def test_transformer_files_make_the_folders_picture(modern_engine, control, model, no_network):
    folder = run(modern_engine, _req(control))
    single = run(modern_engine, _req(control, model=model))
    assert isinstance(single, Result), single
    difference = np.abs(pixels(single) - pixels(folder)).max()
    # the same weights; Q8_0 rounds them (a few levels of 255 on this tiny model)
    assert difference == 0 if model != "gguf" else difference <= 12
    assert single.info["model_variant"] == "control"


# -- defaults ------------------------------------------------------------------------------------
def test_steps_and_guidance_follow_what_the_model_is(modern_engine, control):
    left = {"model_defaults": ["steps", "guidance_scale"]}
    canny = run(modern_engine, _req(control, extras=left))
    assert (canny.metadata[0]["steps"], canny.metadata[0]["guidance_scale"]) == (50, 30.0)
    # the file's metadata says Depth: its settings, and a note for an edge map
    depth = run(modern_engine, _req(control, model="depth_file", extras=left))
    assert (depth.metadata[0]["steps"], depth.metadata[0]["guidance_scale"]) == (30, 10.0)
    assert depth.info["model_variant"] == "control-depth"
    assert any("reads depth maps" in n and "canny" in n for n in depth.info["notes"])
    # what the user sets stays
    mine = run(modern_engine, _req(control, steps=3, guidance_scale=12.0))
    assert (mine.metadata[0]["steps"], mine.metadata[0]["guidance_scale"]) == (3, 12.0)


def test_an_unknown_kind_follows_the_units_preprocessor():
    from engine.sd.flux_control import spec_for_unit
    from engine.sd.modern_families import FAMILIES

    spec = FAMILIES[("flux", "control")]
    depth, notes = spec_for_unit(spec, ControlUnit(image="x.png", preprocessor="depth"))
    assert (depth.defaults.steps, depth.defaults.guidance_scale, depth.control) == (
        30,
        10.0,
        "depth",
    )
    assert depth.variant == "control" and notes == []
    lines, _ = spec_for_unit(spec, ControlUnit(image="x.png", preprocessor="lineart"))
    assert (lines.defaults.steps, lines.control) == (50, "canny")
    ready, _ = spec_for_unit(spec, ControlUnit(image="x.png", preprocessor="none"))
    assert ready is spec


# -- bad input -----------------------------------------------------------------------------------
def test_bad_input_gets_one_clear_message_and_the_engine_keeps_serving(modern_engine, control):
    inputs = control["inputs"]
    bare = run(modern_engine, request(control["folder"]))
    assert isinstance(bare, Failed) and "needs a control image" in bare.message
    assert "--control canny:IMG" in bare.message
    plain = run(modern_engine, request(control["plain"], control=_unit(control)))
    assert isinstance(plain, Failed)
    assert "FLUX.1 Canny or Depth model" in plain.message
    cases = {
        "no control strength": _req(control, unit={"weight": 0.5}),
        "control range of 0-0.5": _req(control, unit={"end": 0.5}),
        "no guess mode": _req(control, unit={"guess_mode": True}),
        "is not used with them": _req(control, unit={"model": str(control["plain"])}),
        "read one control image; this request has 2": request(
            control["folder"], control=_unit(control) + _unit(control, "disc")
        ),
        "no image prompts": _req(
            control, image_prompts=(ImagePrompt(image=str(inputs / "disc.png")),)
        ),
        "control image": _req(control, picture="missing"),
    }
    for words, req in cases.items():
        result = run(modern_engine, req)
        assert isinstance(result, Failed) and words in result.message, (words, result)
    # the unit may name the model itself
    itself = run(modern_engine, _req(control, unit={"model": str(control["folder"])}))
    assert isinstance(itself, Result), itself


# -- metadata and the CLI --------------------------------------------------------------------------
def test_png_metadata_round_trip_carries_the_control_unit(modern_engine, control, tmp_path):
    from engine.api import GenerationRequest
    from engine.metadata import read_generation_metadata, save_png_with_metadata

    first = run(modern_engine, _req(control, extras={"model_defaults": ["steps"]}))
    stored = first.metadata[0]
    assert stored["control"][0]["preprocessor"] == "canny"
    assert stored["control"][0]["image"] == str(control["inputs"] / "square.png")
    path = save_png_with_metadata(first.images[0], tmp_path / "c.png", stored)
    again = read_generation_metadata(path)
    assert again.control == first_request_control(stored)
    assert np.array_equal(pixels(run(modern_engine, again)), pixels(first))
    # reuse settings (the stored request) replays the same pixels too
    replay = run(modern_engine, GenerationRequest.from_dict(stored))
    assert np.array_equal(pixels(replay), pixels(first))


def first_request_control(stored: dict) -> tuple:
    return tuple(ControlUnit.from_dict(unit) for unit in stored["control"])


def test_cli_control_flag_runs_a_flux_control_model(control, tmp_path, capsys):
    from desktop.cli import main

    out = tmp_path / "cli.png"
    args = ["generate", "a photo of a cat", "--model", str(control["folder"]), "--steps", "2"]
    args += ["--width", "32", "--height", "32", "--seed", "7", "--cfg", "4", "--device", "cpu"]
    args += ["--precision", "fp32", "--threads", "1", "--quiet", "-o", str(out)]
    args += ["--control", f"canny:{control['inputs'] / 'square.png'}"]
    assert main(args) == 0, capsys.readouterr().err
    image = Image.open(out)
    stored = json.loads(image.info["easel"])
    assert stored["control"][0]["model"] == "" and stored["control"][0]["preprocessor"] == "canny"
    theirs = _reference(control, "FluxControlPipeline", control_image=_canny(control))
    assert np.array_equal(np.asarray(image.convert("RGB")).astype(int), theirs)
    # without --control the CLI says what the model needs
    assert main(args[:-2]) != 0
    assert "needs a control image" in capsys.readouterr().err
