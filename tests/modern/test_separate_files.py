"""SD3 and FLUX.1 held as separate files, ComfyUI style: a transformer file, clip_l, clip_g,
t5xxl and the VAE, with no companion folder; loaded with a config folder (the tiny models' here,
resources/configs in the app) and the bundled tokenizers, with the network cut."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.errors import ModelError
from engine.library.probe import probe_path
from engine.library.resolve import resolve_model
from engine.sd import modern_parts
from engine.sd.modern_families import family_spec
from engine.sd.modern_loading import load_modern_pipeline
from tests.modern.conftest import fresh_memory, pixels, request


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
        # CLIP-L 16 wide with 2 layers, CLIP-G 32 wide with 3: different, as the real ones
        ("sd3", lambda f: build_sd3(f, clip_g_layers=3, clip_l_width=16), "sd3-medium"),
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
    fresh_memory(pipe)  # equal weights at equal alignment: see fresh_memory
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
        ("clip_l", "clip", 16, 2),
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
    assert parts["text_encoder"].name == "clip_g.safetensors"  # the 16-wide (CLIP-L) file
    assert parts["text_encoder_2"].name == "clip_l.safetensors"


@pytest.mark.parametrize("with_t5", [True, False])
def test_an_all_in_one_file_loads_with_the_config_folder_alone(
    separate, tmp_path, with_t5, no_network
):
    """Stability's all-in-one layout (MMDiT, VAE and text encoders in one file) needs no
    companion; a file without T5 (SD3's "incl_clips") runs without it."""
    from diffusers import DiffusionPipeline

    from tests.helpers.tiny_parts import save_sd3_all_in_one

    model = separate["sd3"]
    path = save_sd3_all_in_one(model["folder"], tmp_path / "sd3_all.safetensors", with_t5=with_t5)
    probe = probe_path(path)
    assert (probe.details["contents"], probe.details["key_layout"]) == ("all-in-one", "original")
    pipe = load_modern_pipeline(
        resolve_model(str(path)), torch.float32, skip_t5=False, config_dir=model["config"]
    )
    assert (pipe.text_encoder_3 is not None) == with_t5
    options = {} if with_t5 else {"text_encoder_3": None, "tokenizer_3": None}
    reference = DiffusionPipeline.from_pretrained(
        str(model["folder"]), local_files_only=True, **options
    )
    with torch.no_grad():  # the all-in-one CLIP-L has no projection: diffusers uses the identity
        reference.text_encoder.text_projection.weight.copy_(torch.eye(16))
    assert np.array_equal(_run(pipe, "sd3"), _run(reference, "sd3"))


def test_a_gguf_transformer_with_separate_parts_equals_it_with_a_companion(separate, tmp_path):
    from tests.helpers.tiny_modern import save_gguf_transformer

    model = separate["flux"]
    models = tmp_path / "models"
    shutil.copytree(model["files"]["transformer"].parent.parent, models)
    parted = save_gguf_transformer(model["folder"], models / "diffusion_models" / "t-Q8_0.gguf")
    beside = tmp_path / "beside"
    shutil.copytree(model["folder"], beside / "tiny-flux")  # a companion next to the file
    companioned = shutil.copy(parted, beside / "t-Q8_0.gguf")
    ours = load_modern_pipeline(
        resolve_model(str(parted)), torch.float32, skip_t5=False, config_dir=model["config"]
    )
    theirs = load_modern_pipeline(resolve_model(str(companioned)), torch.float32, skip_t5=False)
    assert np.array_equal(_run(ours, "flux"), _run(theirs, "flux"))


def test_prefetch_builds_the_bundled_tokenizers_a_transformer_file_loads_with(separate):
    from engine.sd import tokenizers

    assert tokenizers.single_file_variants(separate["sd3"]["files"]["transformer"]) == {
        "tokenizer": "clip",
        "tokenizer_2": "clip-g",
        "tokenizer_3": "t5",
    }
    assert tokenizers.prefetch(separate["flux"]["files"]["transformer"]) == 2


def test_the_memory_plan_counts_the_separate_parts(separate, monkeypatch):
    from engine.sd.memory_plan import file_bytes, model_components

    model = separate["sd3"]
    files = model["files"]
    transformer = resolve_model(str(files["transformer"]))
    monkeypatch.setattr(modern_parts, "configs_root", lambda: model["configs_root"])
    sizes = model_components(transformer, "fp32")
    assert sizes == {
        "checkpoint": file_bytes(files["transformer"], "fp32"),
        "text_encoder": file_bytes(files["clip_l"], "fp32"),
        "text_encoder_2": file_bytes(files["clip_g"], "fp32"),
        "text_encoder_3": file_bytes(files["t5"], "fp32"),
        "vae": file_bytes(files["vae"], "fp32"),
    }
    assert "text_encoder_3" not in model_components(transformer, "fp32", skip_t5=True)


def test_an_fp8_text_encoder_is_used_only_when_no_fuller_one_is_there(separate, tmp_path):
    from safetensors.torch import load_file, save_file

    model = separate["flux"]
    models = tmp_path / "models"
    shutil.copytree(model["files"]["transformer"].parent.parent, models)
    encoders = models / "text_encoders"
    weights = load_file(str(encoders / "t5xxl_fp16.safetensors"))
    fp8 = {k: v.to(torch.float8_e4m3fn) if v.ndim == 2 else v for k, v in weights.items()}
    save_file(fp8, str(encoders / "t5xxl_fp8_e4m3fn.safetensors"))
    assert probe_path(encoders / "t5xxl_fp8_e4m3fn.safetensors").variant == "t5,fp8"
    transformer = models / "diffusion_models" / "tiny-t.safetensors"
    spec = family_spec("flux", "dev")
    chosen = modern_parts.choose_parts(transformer, spec, model["config"])
    assert chosen["text_encoder_2"].name == "t5xxl_fp16.safetensors"
    (encoders / "t5xxl_fp16.safetensors").unlink()
    chosen = modern_parts.choose_parts(transformer, spec, model["config"])
    assert chosen["text_encoder_2"].name == "t5xxl_fp8_e4m3fn.safetensors"
    pipe = load_modern_pipeline(
        resolve_model(str(transformer)), torch.float32, skip_t5=False, config_dir=model["config"]
    )
    assert pipe.text_encoder_2.shared.weight.dtype == torch.float32  # upcast on load
    assert _run(pipe, "flux").shape == (1, 32, 32, 3)


def test_parts_are_found_in_easels_models_folder_and_the_library(separate, tmp_path):
    """Text encoders in <models>/text_encoders, and a VAE the library scanned from a user
    folder, serve a transformer file that sits alone somewhere else."""
    from engine.library.records import ModelLibrary
    from engine.library.scan import scan_library
    from engine.paths import models_dir

    model = separate["flux"]
    files = model["files"]
    alone = shutil.copy(files["transformer"], tmp_path / "tiny-t.safetensors")
    (models_dir() / "text_encoders").mkdir(parents=True, exist_ok=True)
    for name in ("clip_l", "t5"):
        shutil.copy(files[name], models_dir() / "text_encoders" / files[name].name)
    user_folder = tmp_path / "my-vaes"
    user_folder.mkdir()
    shutil.copy(files["vae"], user_folder / "flux-ae.safetensors")
    library = ModelLibrary()
    library.add_folder(user_folder)
    scan_library(library, include_hf_cache=False)
    record = library.by_path(user_folder / "flux-ae.safetensors")
    assert (record.kind, record.variant) == ("vae", "16-channel")
    parts = modern_parts.choose_parts(Path(alone), family_spec("flux", "dev"), model["config"])
    assert parts == {
        "text_encoder": models_dir() / "text_encoders" / "clip_l.safetensors",
        "text_encoder_2": models_dir() / "text_encoders" / "t5xxl_fp16.safetensors",
        "vae": user_folder / "flux-ae.safetensors",
    }


def test_a_folder_without_its_t5_tokenizer_files_gets_the_bundled_one(separate, tmp_path):
    from diffusers import DiffusionPipeline

    model = separate["flux"]
    folder = shutil.copytree(model["folder"], tmp_path / "copied")
    shutil.rmtree(folder / "tokenizer_2")
    pipe = load_modern_pipeline(resolve_model(str(folder)), torch.float32, skip_t5=False)
    reference = DiffusionPipeline.from_pretrained(str(model["folder"]), local_files_only=True)
    assert np.array_equal(_run(pipe, "flux"), _run(reference, "flux"))


def test_a_clip_l_file_without_projection_gets_the_identity_for_sd3(separate, tmp_path):
    """clip_l files made for FLUX carry no text projection; SD3 then uses the identity, as
    diffusers and ComfyUI do for SD3's own all-in-one CLIP-L."""
    from safetensors.torch import load_file, save_file

    model = separate["sd3"]
    models = tmp_path / "models"
    shutil.copytree(model["files"]["transformer"].parent.parent, models)
    clip_l = models / "text_encoders" / "clip_l.safetensors"
    weights = load_file(str(clip_l))
    del weights["text_projection.weight"]
    save_file(weights, str(clip_l))
    transformer = resolve_model(str(models / "diffusion_models" / "tiny-t.safetensors"))
    config = model["config"]
    pipe = load_modern_pipeline(transformer, torch.float32, skip_t5=False, config_dir=config)
    assert torch.equal(pipe.text_encoder.text_projection.weight, torch.eye(16))


def test_a_vae_file_in_diffusers_names_works_too(separate, tmp_path):
    from diffusers import DiffusionPipeline

    model = separate["sd3"]
    models = tmp_path / "models"
    shutil.copytree(model["files"]["transformer"].parent.parent, models)
    (models / "vae" / "sd3_vae.safetensors").unlink()
    shutil.copy(
        model["folder"] / "vae" / "diffusion_pytorch_model.safetensors",
        models / "vae" / "sd3.5_vae.safetensors",
    )
    assert probe_path(models / "vae" / "sd3.5_vae.safetensors").details["key_layout"] == "diffusers"
    transformer = resolve_model(str(models / "diffusion_models" / "tiny-t.safetensors"))
    config = model["config"]
    pipe = load_modern_pipeline(transformer, torch.float32, skip_t5=False, config_dir=config)
    reference = DiffusionPipeline.from_pretrained(str(model["folder"]), local_files_only=True)
    assert np.array_equal(_run(pipe, "sd3"), _run(reference, "sd3"))
