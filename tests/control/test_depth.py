"""The depth preprocessor with a real (tiny, randomly initialised) DPT model saved as a folder,
found through the option, the library scan and refused with a clear message when absent."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from engine.errors import ModelError
from engine.sd.preprocess import run_preprocessor


def build_tiny_dpt(folder):
    """A DPT depth model (ViT backbone, 32 px input) and its processor, as transformers saves
    them: what a user copies from a Hugging Face repo, only small."""
    import torch
    from transformers import DPTConfig, DPTForDepthEstimation, DPTImageProcessor

    torch.manual_seed(0)
    config = DPTConfig(
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=37,
        image_size=32,
        patch_size=8,
        neck_hidden_sizes=[16, 16, 16, 16],
        fusion_hidden_size=16,
        backbone_out_indices=[0, 1, 2, 3],
        reassemble_factors=[4, 2, 1, 0.5],
        head_in_index=-1,
    )
    DPTForDepthEstimation(config).eval().save_pretrained(folder)
    DPTImageProcessor(size={"height": 32, "width": 32}, keep_aspect_ratio=False).save_pretrained(
        folder
    )
    return folder


def scene(size: int = 64, shift: int = 0) -> Image.Image:
    image = Image.new("RGB", (size, size), (90, 120, 200))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, size * 2 // 3, size, size), fill=(60, 140, 60))  # the ground
    draw.ellipse((16 + shift, 14, 44 + shift, 42), fill=(220, 60, 40))  # an object
    return image


@pytest.fixture(scope="module")
def dpt_folder(tmp_path_factory):
    return build_tiny_dpt(tmp_path_factory.mktemp("depth") / "tiny-dpt")


def test_depth_map_is_grey_full_range_at_the_picture_size_and_follows_the_picture(dpt_folder):
    first = run_preprocessor("depth", scene(), {"model": str(dpt_folder)})
    again = run_preprocessor("depth", scene(), {"model": str(dpt_folder)})
    moved = run_preprocessor("depth", scene(shift=14), {"model": str(dpt_folder)})
    assert first.mode == "RGB" and first.size == (64, 64)
    pixels = np.asarray(first).astype(np.int16)
    assert np.array_equal(pixels[..., 0], pixels[..., 1])  # grey: the three channels agree
    assert pixels.min() == 0 and pixels.max() == 255  # stretched to the full range
    assert np.array_equal(pixels, np.asarray(again))  # deterministic
    assert np.abs(pixels - np.asarray(moved).astype(np.int16)).mean() > 1.0


def test_depth_model_is_found_in_the_library(dpt_folder, tmp_path):
    import shutil

    from engine.library.scan import scan_library
    from engine.paths import models_dir

    target = models_dir() / "depth" / "tiny-dpt"
    shutil.copytree(dpt_folder, target)
    scan_library(include_hf_cache=False)
    from engine.sd.control_library import library_models

    assert [p.name for p in library_models("depth")] == ["tiny-dpt"]
    out = run_preprocessor("depth", scene(), None)
    reference = run_preprocessor("depth", scene(), {"model": str(dpt_folder)})
    assert np.array_equal(np.asarray(out), np.asarray(reference))


def test_no_depth_model_says_where_to_put_one(monkeypatch, tmp_path):
    from engine.sd import depth

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    depth._LOADED.clear()
    with pytest.raises(ModelError, match="depth model") as caught:
        run_preprocessor("depth", scene(), None)
    assert "depth" in str(caught.value) and "preprocessor 'none'" in str(caught.value)


def test_a_damaged_depth_folder_is_one_clear_message(tmp_path):
    broken = tmp_path / "broken-dpt"
    broken.mkdir()
    (broken / "config.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ModelError, match="could not be loaded"):
        run_preprocessor("depth", scene(), {"model": str(broken)})


def test_a_depth_unit_steers_a_generation_through_the_engine(
    engine, control_models, pictures, dpt_folder
):
    from engine.api_control import ControlUnit
    from engine.events import Result
    from tests.control.conftest import make_request

    def depth_unit(image: str) -> ControlUnit:
        return ControlUnit(
            image=str(pictures / image),
            model=str(control_models["cn_sd1"]["folder"]),
            preprocessor="depth",
            options={"model": str(dpt_folder)},
        )

    results = []
    for image in ("drawing.png", "init.png"):
        final = engine.run(
            make_request(control_models["sd1"], control=[depth_unit(image)]), timeout=300
        )
        assert isinstance(final, Result), getattr(final, "message", final)
        results.append(np.asarray(final.images[0]).astype(np.int16))
    # a different picture gives a different depth map, and so a different picture out
    assert np.abs(results[0] - results[1]).mean() > 1.0
    assert final.metadata[0]["control"][0]["preprocessor"] == "depth"
