"""ComfyUI's "scaled fp8" files (fp8 weights with a float32 `scale_weight` each): a T5 and a
CLIP-L text encoder, a FLUX.1 transformer in BFL's layout and an SD3 transformer, written from
tiny random models, loaded through Easel's library code with the network cut. Each picture must
be close to the full-precision file's and far closer than the same fp8 tensors without their
scales give (so the test fails when a loader ignores the scales)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from engine.errors import ModelError
from engine.library.probe import probe_path
from engine.library.resolve import resolve_model
from engine.sd import modern_parts
from engine.sd.modern_loading import load_modern_pipeline
from tests.helpers.scaled_fp8 import psnr, to_scaled_fp8
from tests.modern.conftest import fresh_memory, pixels, request

COMFY = "model.diffusion_model."
#: measured on these tiny models: scaled 47-72 dB, the same fp8 tensors without scales 5-48 dB
#: (text encoders move these tiny pictures little: their gain was 24-27 dB, transformers' 38-42)
MIN_PSNR = 30.0
MIN_GAIN = 15.0  # dB better than the fp8 tensors without scales


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """{family: {"folder", "config", "files", "configs_root", "picture"}}."""
    from diffusers import DiffusionPipeline

    from tests.helpers.tiny_modern import build_flux, build_sd3
    from tests.helpers.tiny_parts import save_separate_files, write_config_folder

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("scaled-fp8")
    configs = root / "configs"
    out = {}
    for family, build, config_name in (
        ("sd3", lambda f: build_sd3(f, clip_g_layers=3, clip_l_width=16), "sd3-medium"),
        ("flux", build_flux, "flux-dev"),
    ):
        folder = build(root / f"tiny-{family}")
        reference = DiffusionPipeline.from_pretrained(str(folder), local_files_only=True)
        out[family] = {
            "folder": folder,
            "files": save_separate_files(folder, root / family / "models"),
            "config": write_config_folder(folder, configs / config_name),
            "configs_root": configs,
            "picture": _run(reference, family),
        }
    return out


def _run(pipe, family, seed=3):
    fresh_memory(pipe)
    kwargs = dict(prompt="a photo of a cat", num_inference_steps=2, height=32, width=32)
    if family == "sd3":
        kwargs.update(negative_prompt="blurry, low quality", max_sequence_length=32)
    generator = torch.Generator().manual_seed(seed)
    return pipe(generator=generator, output_type="np", **kwargs).images


def _models_with(model: dict, part: str, root: Path, *, scales: bool = True) -> Path:
    """A copy of the separate files with `part` replaced by its scaled-fp8 file (or by the
    same fp8 tensors without scales); the transformer file's path."""
    from tests.helpers.tiny_flux_original import original_state

    models = root / ("scaled" if scales else "unscaled")
    shutil.copytree(model["files"]["transformer"].parent.parent, models)
    transformer = models / "diffusion_models" / "tiny-t.safetensors"
    source = model["files"][part]
    if part == "transformer" and "flux" in model["config"].name:
        state, prefix = original_state(model["folder"], prefix=COMFY), COMFY  # ComfyUI's FLUX
    else:
        state, prefix = load_file(str(source)), ""
    (models / source.relative_to(model["files"]["transformer"].parent.parent)).unlink()
    target = transformer if part == "transformer" else models / "text_encoders" / f"{part}.sft"
    state = to_scaled_fp8(state, marker_prefix=prefix, scales=scales)
    save_file({k: v.contiguous() for k, v in state.items()}, str(target))
    return transformer


def _load(transformer: Path, model: dict):
    resolved = resolve_model(str(transformer))
    return load_modern_pipeline(resolved, torch.float32, skip_t5=False, config_dir=model["config"])


CASES = [("flux", "t5"), ("flux", "clip_l"), ("flux", "transformer"), ("sd3", "transformer")]


@pytest.mark.parametrize(("family", "part"), CASES, ids=[f"{f}-{p}" for f, p in CASES])
def test_a_scaled_fp8_part_makes_nearly_the_full_precision_picture(
    tiny, family, part, tmp_path, no_network
):
    model = tiny[family]
    scaled = _models_with(model, part, tmp_path)
    unscaled = _models_with(model, part, tmp_path, scales=False)
    near = psnr(_run(_load(scaled, model), family), model["picture"])
    far = psnr(_run(_load(unscaled, model), family), model["picture"])
    print(f"{family} {part}: scaled {near:.1f} dB, without scales {far:.1f} dB")
    assert near > MIN_PSNR
    assert near > far + MIN_GAIN


def test_the_dequantised_weights_are_the_fp8_values_times_the_scale(tiny, tmp_path):
    from engine.sd.modern_text_encoders import load_text_encoder

    model = tiny["flux"]
    scaled = to_scaled_fp8(load_file(str(model["files"]["t5"])))
    path = tmp_path / "t5xxl_fp8_e4m3fn_scaled.safetensors"
    save_file(scaled, str(path))
    encoder = load_text_encoder(path, model["config"], "text_encoder_2", torch.bfloat16)
    state = encoder.state_dict()
    checked = 0
    for name, tensor in scaled.items():
        if tensor.dtype == torch.float8_e4m3fn and name in state:
            scale = scaled[name[: -len("weight")] + "scale_weight"]
            want = (tensor.to(torch.float32) * scale).to(torch.bfloat16)
            assert state[name].dtype == torch.bfloat16 and torch.equal(state[name], want), name
            checked += 1
    assert checked >= 4
    assert not any("scale" in k for k in state)


def test_the_probe_names_scaled_files_and_runs_them(tiny, tmp_path):
    model = tiny["flux"]
    transformer = _models_with(model, "transformer", tmp_path)
    result = probe_path(transformer)
    assert (result.status, result.variant) == ("ok", "dev,fp8-scaled")
    scaled_t5 = to_scaled_fp8(load_file(str(model["files"]["t5"])))
    save_file(scaled_t5, str(tmp_path / "t5.safetensors"))
    t5 = probe_path(tmp_path / "t5.safetensors")
    assert (t5.kind, t5.status, t5.variant) == ("text_encoder", "ok", "t5,fp8-scaled")


def test_a_scale_without_its_weight_or_of_the_wrong_shape_is_refused(tiny, tmp_path):
    model = tiny["flux"]
    state = to_scaled_fp8(load_file(str(model["files"]["t5"])))
    weight = next(k for k, v in state.items() if v.dtype == torch.float8_e4m3fn)
    path = tmp_path / "t5.safetensors"
    orphan = {k: v for k, v in state.items() if k != weight}
    save_file(orphan, str(path))
    with pytest.raises(ModelError, match=r"fp8 scale '.*scale_weight' but no weight"):
        modern_parts.load_text_encoder(path, model["config"], "text_encoder_2", torch.float32)
    wrong = {**state, weight[: -len("weight")] + "scale_weight": torch.ones(3)}
    save_file(wrong, str(path))
    with pytest.raises(ModelError, match=r"of shape \(3,\) for a weight of shape"):
        modern_parts.load_text_encoder(path, model["config"], "text_encoder_2", torch.float32)
    flux = _models_with(model, "transformer", tmp_path)
    broken = load_file(str(flux))
    broken[COMFY + "img_in.scale_weight"] = torch.ones(2, 2)
    save_file(broken, str(flux))
    with pytest.raises(ModelError, match=r"'img_in\.scale_weight' of shape \(2, 2\)"):
        _load(flux, model)


def test_the_engine_runs_a_scaled_fp8_flux_transformer(tiny, modern_engine, monkeypatch, tmp_path):
    model = tiny["flux"]
    monkeypatch.setattr(modern_parts, "configs_root", lambda: model["configs_root"])
    scaled = modern_engine.run(request(_models_with(model, "transformer", tmp_path)), timeout=300)
    full = modern_engine.run(request(model["folder"]), timeout=300)
    image = pixels(scaled) / 255.0
    assert psnr(image, pixels(full) / 255.0) > MIN_PSNR
    assert not np.array_equal(pixels(scaled), pixels(full))  # it did run from the fp8 weights


def test_an_sd3_all_in_one_scaled_fp8_file_makes_nearly_its_full_precision_picture(
    tiny, tmp_path, no_network
):
    """Stability's all-in-one layout through diffusers' from_single_file, the MMDiT in scaled
    fp8 under `model.diffusion_model.` (as sd3.5_large_fp8_scaled.safetensors)."""
    from tests.helpers.tiny_parts import save_sd3_all_in_one

    model = tiny["sd3"]
    full = save_sd3_all_in_one(model["folder"], tmp_path / "sd3_full.safetensors")
    state = load_file(str(full))
    pictures = {"full": _run(_load(full, model), "sd3")}
    for name, scales in (("scaled", True), ("unscaled", False)):
        mmdit = {k: v for k, v in state.items() if k.startswith(COMFY)}
        converted = {k: v for k, v in state.items() if not k.startswith(COMFY)}
        converted.update(to_scaled_fp8(mmdit, marker_prefix=COMFY, scales=scales))
        path = tmp_path / f"sd3_{name}.safetensors"
        save_file({k: v.contiguous() for k, v in converted.items()}, str(path))
        if scales:
            assert probe_path(path).variant.endswith(",fp8-scaled")
        pictures[name] = _run(_load(path, model), "sd3")
    near = psnr(pictures["scaled"], pictures["full"])
    far = psnr(pictures["unscaled"], pictures["full"])
    print(f"sd3 all-in-one: scaled {near:.1f} dB, without scales {far:.1f} dB")
    assert near > MIN_PSNR and near > far + MIN_GAIN
