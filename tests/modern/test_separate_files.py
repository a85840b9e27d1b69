"""SD3 and FLUX.1 held as separate files, ComfyUI style: a transformer file, clip_l, clip_g,
t5xxl and the VAE, with no companion folder; loaded with a config folder (the tiny models' here,
resources/configs in the app) and the bundled tokenizers, with the network cut."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from engine.errors import ModelError
from engine.library.probe import probe_path
from engine.library.resolve import resolve_model
from engine.sd import modern_parts
from engine.sd.modern_families import family_spec
from engine.sd.modern_loading import load_modern_pipeline
from tests.modern.conftest import pixels, request


@pytest.fixture(scope="module")
def separate(tmp_path_factory):
    """{family: {"folder", "config", "files", "configs_root"}} for tiny SD3 and FLUX dev."""
    from tests.helpers.tiny_modern import build_flux, build_sd3
    from tests.helpers.tiny_parts import save_separate_files, write_config_folder

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("separate")
    configs = root / "configs"  # stands in for resources/configs at the tiny sizes
    out = {}
    for family, build, config_name in (
        ("sd3", lambda f: build_sd3(f, clip_g_layers=3), "sd3-medium"),
        ("flux", build_flux, "flux-dev"),
    ):
        folder = build(root / f"tiny-{family}")
        out[family] = {
            "folder": folder,
            "files": save_separate_files(folder, root / family / "models"),
            "config": write_config_folder(folder, configs / config_name),
            "configs_root": configs,
        }
    return out


def _run(pipe, family, seed=3):
    kwargs = dict(prompt="a photo of a cat", num_inference_steps=2, height=32, width=32)
    if family == "sd3":
        kwargs.update(negative_prompt="blurry, low quality", max_sequence_length=32)
    generator = torch.Generator().manual_seed(seed)
    return pipe(generator=generator, output_type="np", **kwargs).images


@pytest.mark.parametrize("family", ["sd3", "flux"])
def test_separate_files_make_the_same_picture_as_the_folder(separate, family, no_network):
    from diffusers import DiffusionPipeline

    model = separate[family]
    transformer = resolve_model(str(model["files"]["transformer"]))
    pipe = load_modern_pipeline(
        transformer, torch.float32, skip_t5=False, config_dir=model["config"]
    )
    reference = DiffusionPipeline.from_pretrained(str(model["folder"]), local_files_only=True)
    assert type(pipe) is type(reference)
    ours, theirs = _run(pipe, family), _run(reference, family)
    assert np.array_equal(ours, theirs)
    assert not np.array_equal(ours, _run(pipe, family, seed=4))  # the seed matters


def test_the_engine_runs_a_transformer_file_with_separate_parts(
    separate, modern_engine, monkeypatch, no_network
):
    model = separate["flux"]
    monkeypatch.setattr(modern_parts, "configs_root", lambda: model["configs_root"])
    from_files = modern_engine.run(request(model["files"]["transformer"]), timeout=300)
    from_folder = modern_engine.run(request(model["folder"]), timeout=300)
    assert np.array_equal(pixels(from_files), pixels(from_folder))


def test_the_probe_names_each_separate_file(separate):
    sd3 = {name: probe_path(path) for name, path in separate["sd3"]["files"].items()}
    assert (sd3["transformer"].kind, sd3["transformer"].details["contents"]) == (
        "checkpoint",
        "transformer-only",
    )
    for name, layout, width, layers in (
        ("clip_l", "clip", 32, 2),
        ("clip_g", "open_clip", 32, 3),
        ("t5", "transformers", 64, 2),
    ):
        result = sd3[name]
        assert (result.kind, result.status, result.details["key_layout"]) == (
            "text_encoder",
            "ok",
            layout,
        )
        assert (result.details["width"], result.details["layers"]) == (width, layers)
    assert sd3["t5"].details["architecture"] == "t5" and sd3["t5"].variant == "t5"
    vae = sd3["vae"]
    assert (vae.kind, vae.status, vae.variant, vae.details["fits"]) == (
        "vae",
        "ok",
        "16-channel",
        "sd3, flux",
    )


def test_a_missing_text_encoder_is_named(separate, tmp_path):
    model = separate["flux"]
    models = tmp_path / "models"
    shutil.copytree(model["files"]["transformer"].parent.parent, models)
    (models / "text_encoders" / "t5xxl_fp16.safetensors").unlink()
    transformer = resolve_model(str(models / "diffusion_models" / "tiny-t.safetensors"))
    with pytest.raises(ModelError) as error:
        load_modern_pipeline(transformer, torch.float32, skip_t5=False, config_dir=model["config"])
    message = str(error.value)
    assert "FLUX.1 needs a T5 text encoder file (32 wide, 2 layers)" in message
    assert "text_encoders" in message and "found: clip_l.safetensors" in message
    assert "CLIP" not in message.split("found:")[0]  # CLIP-L is there: only T5 is asked for


def test_sd3_skip_t5_needs_no_t5_file(separate, tmp_path):
    model = separate["sd3"]
    models = tmp_path / "models"
    shutil.copytree(model["files"]["transformer"].parent.parent, models)
    (models / "text_encoders" / "t5xxl_fp16.safetensors").unlink()
    transformer = resolve_model(str(models / "diffusion_models" / "tiny-t.safetensors"))
    config = model["config"]
    pipe = load_modern_pipeline(transformer, torch.float32, skip_t5=True, config_dir=config)
    assert pipe.text_encoder_3 is None and pipe.tokenizer_3 is None
    assert _run(pipe, "sd3").shape == (1, 32, 32, 3)
    with pytest.raises(ModelError, match="T5 text encoder file"):
        load_modern_pipeline(transformer, torch.float32, skip_t5=False, config_dir=model["config"])


def test_clip_files_go_to_the_slot_their_tensors_fit(separate, tmp_path):
    """CLIP-L and CLIP-G files swapped by name still land in their own slots."""
    model = separate["sd3"]
    models = tmp_path / "models"
    shutil.copytree(model["files"]["transformer"].parent.parent, models)
    encoders = models / "text_encoders"
    (encoders / "clip_l.safetensors").rename(encoders / "tmp.safetensors")
    (encoders / "clip_g.safetensors").rename(encoders / "clip_l.safetensors")
    (encoders / "tmp.safetensors").rename(encoders / "clip_g.safetensors")
    parts = modern_parts.choose_parts(
        models / "diffusion_models" / "tiny-t.safetensors",
        family_spec("sd3", "medium"),
        model["config"],
    )
    assert parts["text_encoder"].name == "clip_g.safetensors"  # the 2-layer (CLIP-L) file
    assert parts["text_encoder_2"].name == "clip_l.safetensors"
