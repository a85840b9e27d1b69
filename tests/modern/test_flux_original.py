"""FLUX.1 single files in Black Forest Labs' original layout (`double_blocks`, `single_blocks`,
`img_in`, ...): transformer-only, under ComfyUI's `model.diffusion_model.` prefix, and as
ComfyUI's all-in-one checkpoint, at the tiny model's width (32, not the real 3072 diffusers'
own converter assumes). Each is loaded through Easel's library code with the network cut and
must make exactly the picture of the diffusers folder it was written from."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from engine.errors import ModelError
from engine.library.probe import probe_path
from engine.library.resolve import resolve_model
from engine.sd import flux_convert, modern_parts
from engine.sd.modern_loading import load_modern_pipeline
from tests.helpers.tiny_flux_original import (
    flux_to_original,
    save_comfy_all_in_one,
    save_original_transformer,
)
from tests.modern.conftest import fresh_memory, fresh_module, pixels, request

VARIANTS = {"dev": True, "schnell": False}  # variant -> guidance embedder


@pytest.fixture(scope="module")
def flux(tmp_path_factory):
    """{variant: {"folder", "config", "models", "configs_root"}}: the tiny FLUX.1 dev and
    schnell folders, their config folders and their separate text encoder / VAE files."""
    from tests.helpers.tiny_modern import build_flux
    from tests.helpers.tiny_parts import save_separate_files, write_config_folder

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("flux-original")
    configs = root / "configs"  # stands in for resources/configs at the tiny sizes
    out = {}
    for variant, guidance in VARIANTS.items():
        folder = build_flux(root / f"tiny-flux-{variant}", guidance=guidance)
        models = root / variant / "models"
        save_separate_files(folder, models)
        (models / "diffusion_models" / "tiny-t.safetensors").unlink()  # diffusers names
        out[variant] = {
            "folder": folder,
            "models": models,
            "config": write_config_folder(folder, configs / f"flux-{variant}"),
            "configs_root": configs,
        }
    return out


def _run(pipe, seed=3):
    fresh_memory(pipe)
    generator = torch.Generator().manual_seed(seed)
    kwargs = dict(prompt="a photo of a cat", num_inference_steps=2, height=32, width=32)
    return pipe(generator=generator, output_type="np", **kwargs).images


def _reference(model):
    from diffusers import DiffusionPipeline

    return DiffusionPipeline.from_pretrained(str(model["folder"]), local_files_only=True)


def _load(path, model=None):
    config = model["config"] if model else None
    return load_modern_pipeline(
        resolve_model(str(path)), torch.float32, skip_t5=False, config_dir=config
    )


# -- the converter ---------------------------------------------------------------------------
def _full_width_state(device: str, columns: int | None = None) -> dict:
    """FLUX.1 dev's tensors at the real width (3072), one double and one single block; on the
    meta device (shapes only), or real with `columns` columns (the converters only split rows)."""
    width, mlp, text = 3072, 4 * 3072, 4096
    shapes = {
        "img_in": (width, 64),
        "txt_in": (width, text),
        "time_in.in_layer": (width, 256),
        "time_in.out_layer": (width, width),
        "vector_in.in_layer": (width, 768),
        "vector_in.out_layer": (width, width),
        "guidance_in.in_layer": (width, 256),
        "guidance_in.out_layer": (width, width),
        "final_layer.linear": (64, width),
        "final_layer.adaLN_modulation.1": (2 * width, width),
        "single_blocks.0.modulation.lin": (3 * width, width),
        "single_blocks.0.linear1": (3 * width + mlp, width),
        "single_blocks.0.linear2": (width, width + mlp),
    }
    for stream in ("img", "txt"):
        block = f"double_blocks.0.{stream}_"
        shapes.update(
            {
                block + "mod.lin": (6 * width, width),
                block + "attn.qkv": (3 * width, width),
                block + "attn.proj": (width, width),
                block + "mlp.0": (mlp, width),
                block + "mlp.2": (width, mlp),
            }
        )
    state = {}
    for name, shape in shapes.items():
        shape = shape if columns is None else (shape[0], columns)
        state[name + ".weight"] = torch.randn(shape, device=device)
        state[name + ".bias"] = torch.randn(shape[0], device=device)
    norms = ["double_blocks.0.img_attn", "double_blocks.0.txt_attn", "single_blocks.0"]
    for block in norms:
        for norm in ("query_norm", "key_norm"):
            state[f"{block}.norm.{norm}.scale"] = torch.randn(128, device=device)
    return state


def test_at_full_width_the_converter_agrees_with_diffusers_key_for_key():
    from diffusers.loaders.single_file_utils import (
        convert_flux_transformer_checkpoint_to_diffusers as diffusers_convert,
    )

    meta = _full_width_state("meta")  # real shapes, no memory
    ours = flux_convert.convert_state_dict(meta)
    theirs = diffusers_convert(dict(meta))
    assert sorted(ours) == sorted(theirs)
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}
    # the values, with the real row counts and a single column (the splits and swaps are by row)
    torch.manual_seed(0)
    narrow = {("model.diffusion_model." + k): v for k, v in _full_width_state("cpu", 1).items()}
    ours = flux_convert.convert_state_dict(narrow)
    theirs = diffusers_convert(dict(narrow))
    assert sorted(ours) == sorted(theirs)
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)


def test_the_geometry_is_read_from_the_tensors(flux):
    state = flux_to_original(_weights(flux["schnell"]["folder"]))
    geometry = flux_convert.read_geometry({k: tuple(v.shape) for k, v in state.items()})
    assert geometry.config() == {
        "num_layers": 1,
        "num_single_layers": 1,
        "attention_head_dim": 16,
        "num_attention_heads": 2,
        "joint_attention_dim": 32,
        "pooled_projection_dim": 32,
        "guidance_embeds": False,
        "in_channels": 64,
        "out_channels": 64,
    }
    assert geometry.mlp_width == 128


def _weights(folder):
    from tests.helpers.tiny_parts import _weights as read

    return read(folder / "transformer")


# -- loading through the library -------------------------------------------------------------
@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("comfy", [False, True], ids=["bfl", "comfy-prefix"])
def test_an_original_transformer_file_makes_the_folders_picture(
    flux, tmp_path, variant, comfy, no_network
):
    model = flux[variant]
    models = shutil.copytree(model["models"], tmp_path / "models")
    path = save_original_transformer(
        model["folder"], models / "diffusion_models" / "flux1.safetensors", comfy=comfy
    )
    probe = probe_path(path)
    assert (probe.base, probe.variant, probe.status) == ("flux", variant, "ok")
    assert (probe.details["key_layout"], probe.details["contents"]) == (
        "original",
        "transformer-only",
    )
    pipe = _load(path, model)
    ours, theirs = _run(pipe), _run(_reference(model))
    assert np.array_equal(ours, theirs)
    assert not np.array_equal(ours, _run(pipe, seed=4))  # the seed matters


def test_an_original_file_with_a_companion_folder_beside_it(flux, tmp_path, no_network):
    """A schnell file next to a dev companion: the guidance embedder follows the file."""
    schnell, dev = flux["schnell"], flux["dev"]
    shutil.copytree(dev["folder"], tmp_path / "tiny-flux-dev")
    path = save_original_transformer(schnell["folder"], tmp_path / "flux1-schnell.safetensors")
    pipe = _load(path)  # no config folder: the companion supplies everything but the weights
    assert pipe.transformer.config.guidance_embeds is False
    reference = _reference(schnell)
    for name, tensor in reference.transformer.state_dict().items():
        assert torch.equal(pipe.transformer.state_dict()[name], tensor), name


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_a_comfyui_all_in_one_file_makes_the_folders_picture(flux, tmp_path, variant, no_network):
    model = flux[variant]
    path = save_comfy_all_in_one(model["folder"], tmp_path / f"flux1-{variant}-aio.safetensors")
    probe = probe_path(path)
    assert (probe.kind, probe.base, probe.variant, probe.status) == (
        "checkpoint",
        "flux",
        variant,
        "ok",
    )
    assert (probe.details["contents"], probe.details["key_layout"]) == ("all-in-one", "original")
    pipe = _load(path, model)
    assert np.array_equal(_run(pipe), _run(_reference(model)))


def test_an_all_in_one_file_with_a_companion_folder_beside_it(flux, tmp_path, no_network):
    """The companion supplies settings, scheduler and tokenizers; every weight is the file's."""
    model = flux["schnell"]
    companion = shutil.copytree(model["folder"], tmp_path / "tiny-flux-schnell")
    for part in ("transformer", "vae", "text_encoder", "text_encoder_2"):
        for weights in (companion / part).glob("*.safetensors"):
            weights.unlink()  # settings only: the weights must come from the file
    path = save_comfy_all_in_one(model["folder"], tmp_path / "flux1-schnell-aio.safetensors")
    assert np.array_equal(_run(_load(path)), _run(_reference(model)))


def test_an_all_in_one_file_without_its_t5_names_what_is_missing(flux, tmp_path):
    from safetensors.torch import load_file, save_file

    model = flux["dev"]
    path = save_comfy_all_in_one(model["folder"], tmp_path / "flux1-dev-aio.safetensors")
    state = load_file(str(path))
    save_file({k: v for k, v in state.items() if ".t5xxl." not in k}, str(path))
    with pytest.raises(ModelError, match=r"nothing is under 'text_encoders\.t5xxl\.transformer\.'"):
        _load(path, model)


def test_an_fp8_original_file_is_upcast_as_it_is_read(flux, tmp_path, no_network):
    from safetensors.torch import save_file

    model = flux["dev"]
    state = flux_to_original(_weights(model["folder"]))
    fp8 = {k: v.to(torch.float8_e4m3fn) if v.ndim == 2 else v for k, v in state.items()}
    models = shutil.copytree(model["models"], tmp_path / "models")
    path = models / "diffusion_models" / "flux1-dev-fp8.safetensors"
    save_file(fp8, str(path))
    assert probe_path(path).variant == "dev,fp8"
    pipe = _load(path, model)
    weight = pipe.transformer.transformer_blocks[0].attn.to_k.weight
    assert weight.dtype == torch.float32
    expected = fp8["double_blocks.0.img_attn.qkv.weight"].float()[32:64]
    assert torch.equal(weight, expected)
    assert _run(pipe).shape == (1, 32, 32, 3)


def test_a_fill_width_original_file_loads_with_its_input_width(flux, tmp_path):
    """FLUX.1 Fill takes latents, the masked image and the mask: 384 input channels for 64
    output channels; the width comes from img_in, not from the (plain dev) config."""
    from tests.helpers.tiny_modern import flux_transformer

    torch.manual_seed(5)
    fill = flux_transformer(in_channels=384)
    path = tmp_path / "flux1-fill-dev.safetensors"
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in flux_to_original(fill.state_dict()).items()}, path)
    probe = probe_path(path)
    assert (probe.variant, probe.details["image_in_channels"]) == ("fill", 384)
    from engine.sd.modern_families import family_spec
    from engine.sd.modern_loading import load_transformer_file

    loaded = load_transformer_file(
        path, family_spec("flux", "fill"), probe, flux["dev"]["config"], torch.float32
    )
    assert (loaded.config.in_channels, loaded.config.out_channels) == (384, 64)
    hidden = torch.randn(1, 16, 384)
    inputs = dict(
        hidden_states=hidden,
        encoder_hidden_states=torch.randn(1, 8, 32),
        pooled_projections=torch.randn(1, 32),
        timestep=torch.tensor([0.5]),
        img_ids=torch.zeros(16, 3),
        txt_ids=torch.zeros(8, 3),
        guidance=torch.tensor([3.5]),
    )
    fresh_module(loaded)
    fresh_module(fill)
    with torch.no_grad():
        assert torch.equal(loaded(**inputs).sample, fill.eval()(**inputs).sample)


def test_the_heads_and_width_come_from_the_file_not_the_settings(flux, tmp_path):
    """A 48-wide file (3 heads of 16) loaded with the 32-wide (2-head) tiny settings, in bf16:
    every size from the tensors, every tensor cast as it is read."""
    from diffusers import FluxTransformer2DModel
    from safetensors.torch import save_file

    from engine.sd.modern_families import family_spec
    from engine.sd.modern_loading import load_transformer_file

    torch.manual_seed(6)
    config = dict(FluxTransformer2DModel.load_config(str(flux["dev"]["config"] / "transformer")))
    wider = FluxTransformer2DModel.from_config({**config, "num_attention_heads": 3})
    path = tmp_path / "flux1-wider.safetensors"
    save_file({k: v.contiguous() for k, v in flux_to_original(wider.state_dict()).items()}, path)
    loaded = load_transformer_file(
        path, family_spec("flux", "dev"), probe_path(path), flux["dev"]["config"], torch.bfloat16
    )
    assert (loaded.config.num_attention_heads, loaded.inner_dim) == (3, 48)
    expected = wider.to(torch.bfloat16).state_dict()
    assert all(
        v.dtype == torch.bfloat16 and torch.equal(v, expected[k])
        for k, v in loaded.state_dict().items()
    )


# -- bad files -------------------------------------------------------------------------------
def test_a_truncated_original_file_gives_one_clear_message(flux, tmp_path):
    model = flux["dev"]
    models = shutil.copytree(model["models"], tmp_path / "models")
    path = save_original_transformer(model["folder"], models / "diffusion_models" / "f.safetensors")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 4096])  # an interrupted download
    with pytest.raises(ModelError, match=r"truncated|download it again|damaged"):
        _load(path, model)


def test_a_file_missing_tensors_or_with_wrong_widths_is_refused(flux, tmp_path):
    from safetensors.torch import save_file

    model = flux["dev"]
    models = shutil.copytree(model["models"], tmp_path / "models")
    state = flux_to_original(_weights(model["folder"]))
    path = models / "diffusion_models" / "f.safetensors"
    missing = {k: v for k, v in state.items() if not k.startswith("single_blocks.0.linear2")}
    save_file(missing, str(path))
    with pytest.raises(ModelError, match=r"not a complete FLUX\.1 transformer: 2 tensors"):
        _load(path, model)
    wrong = dict(state)
    wrong["single_blocks.0.linear1.weight"] = torch.randn(5 * 32, 32)  # a 64-wide MLP
    wrong["single_blocks.0.linear1.bias"] = torch.randn(5 * 32)
    save_file(wrong, str(path))
    with pytest.raises(ModelError, match=r"64-wide MLP at width 32"):
        _load(path, model)
    wrong = dict(state)
    wrong["double_blocks.0.txt_attn.qkv.weight"] = torch.randn(3 * 32 - 1, 32)
    save_file(wrong, str(path))
    with pytest.raises(ModelError, match=r"'double_blocks\.0\.txt_attn\.qkv\.weight' has 95 rows"):
        _load(path, model)
    orphan = {**state, "double_blocks.0.img_attn.qkvx.scale_weight": torch.ones(())}
    save_file(orphan, str(path))  # a scale whose weight is not in the file
    with pytest.raises(ModelError, match=r"fp8 scale 'double_blocks\.0\.img_attn\.qkvx\.scale_"):
        _load(path, model)


# -- the engine --------------------------------------------------------------------------------
def test_the_engine_runs_a_comfyui_all_in_one_file(flux, tmp_path, modern_engine, monkeypatch):
    model = flux["dev"]
    monkeypatch.setattr(modern_parts, "configs_root", lambda: model["configs_root"])
    path = save_comfy_all_in_one(model["folder"], tmp_path / "flux1-dev-aio.safetensors")
    from_file = modern_engine.run(request(path), timeout=300)
    from_folder = modern_engine.run(request(model["folder"]), timeout=300)
    assert np.array_equal(pixels(from_file), pixels(from_folder))
