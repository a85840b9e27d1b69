"""Single-file checkpoints in the original key layout load offline and generate."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from engine.errors import ModelError
from engine.library.single_file import choose_config, load_single_file_pipeline
from engine.paths import resource

from .builders import save_config_folder, sd2_shapes, sdxl_shapes, tiny_sd_pipeline, write_stripped
from .ldm_layout import pipeline_to_ldm


def _generate(pipe, **extra):
    return pipe(
        "a photo of a cat",
        num_inference_steps=2,
        height=64,
        width=64,
        guidance_scale=5.0,
        generator=torch.Generator("cpu").manual_seed(7),
        output_type="np",
        **extra,
    ).images[0]


@pytest.mark.parametrize("xl", [False, True], ids=["sd1", "sdxl"])
def test_original_layout_checkpoint_loads_offline_and_generates(tmp_path, no_network, xl):
    from safetensors.torch import save_file

    torch.set_num_threads(1)
    original = tiny_sd_pipeline(xl=xl)
    original.set_progress_bar_config(disable=True)
    checkpoint = tmp_path / "model.safetensors"
    save_file(pipeline_to_ldm(original), checkpoint)
    config = save_config_folder(original, tmp_path / "config")

    pipe = load_single_file_pipeline(checkpoint, torch_dtype=torch.float32, config=config)
    expected_class = "StableDiffusionXLPipeline" if xl else "StableDiffusionPipeline"
    assert type(pipe).__name__ == expected_class
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    image = _generate(pipe)
    assert image.shape == (64, 64, 3) and np.isfinite(image).all()
    # Every weight made the round trip: the image equals the source pipeline's.
    np.testing.assert_allclose(image, _generate(original), atol=1e-5)


def test_production_path_picks_bundled_config_from_content(tmp_path):
    xl = write_stripped(tmp_path / "sd15.safetensors", sdxl_shapes())
    folder, result = choose_config(xl)
    assert folder == resource("configs", "sdxl-base") and result.base == "sdxl"
    sd2 = write_stripped(tmp_path / "b.safetensors", sd2_shapes())
    assert choose_config(sd2)[0] == resource("configs", "sd2-768-v")
    assert choose_config(sd2, base="sd2-512")[0] == resource("configs", "sd2-512")
    with pytest.raises(ModelError, match="Unknown model type"):
        choose_config(sd2, base="sd9")


def test_non_checkpoints_and_broken_files_are_refused_with_a_reason(tmp_path):
    lora = write_stripped(
        tmp_path / "l.safetensors",
        {"lora_unet_x_attn2_to_k.lora_down.weight": (4, 768)},
    )
    with pytest.raises(ModelError, match="add this file as a LoRA"):
        load_single_file_pipeline(lora)
    truncated = tmp_path / "t.safetensors"
    truncated.write_bytes(b"\xff\x00\x00\x00\x00\x00\x00\x00{}")
    with pytest.raises(ModelError, match="damaged"):
        load_single_file_pipeline(truncated)
    flux = write_stripped(
        tmp_path / "f.safetensors", {"double_blocks.0.img_attn.qkv.weight": (9, 3)}
    )
    with pytest.raises(ModelError, match="FLUX checkpoint: it is loaded with its transformer"):
        load_single_file_pipeline(flux)
    with pytest.raises(ModelError, match="not found"):
        load_single_file_pipeline(tmp_path / "nope.safetensors")


def test_malicious_pickle_checkpoint_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "model.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "x": Payload()}, evil)
    with pytest.raises(ModelError) as caught:
        load_single_file_pipeline(evil, torch_dtype=torch.float32)
    assert not marker.exists()
    message = str(caught.value)
    assert "Refused" in message and "run code" in message and "safetensors" in message


def test_resolve_model_identifies_single_files_and_refuses_other_kinds(tmp_path):
    from engine.library.resolve import resolve_model

    xl = write_stripped(tmp_path / "model.safetensors", sdxl_shapes(9))
    resolved = resolve_model(str(xl))
    assert (resolved.family, resolved.layout, resolved.base, resolved.variant) == (
        "sd",
        "single_file",
        "sdxl",
        "inpaint",
    )
    folder = resolve_model(str(resource("configs", "sd2-768-v")))
    assert (folder.layout, folder.base, folder.variant) == ("diffusers", "sd2", "v_prediction")
    lora = write_stripped(
        tmp_path / "lora.safetensors", {"lora_unet_x_attn2_to_k.lora_down.weight": (4, 768)}
    )
    with pytest.raises(ModelError, match="is a LoRA"):
        resolve_model(str(lora))
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    with pytest.raises(ModelError, match="damaged: the file is empty"):
        resolve_model(str(empty))


def test_refiner_checkpoint_loads_every_weight(tmp_path, no_network):
    from safetensors.torch import save_file

    from .builders import tiny_refiner_pipeline

    original = tiny_refiner_pipeline()
    checkpoint = tmp_path / "refiner.safetensors"
    save_file(pipeline_to_ldm(original), checkpoint)
    config = save_config_folder(original, tmp_path / "config")
    pipe = load_single_file_pipeline(checkpoint, torch_dtype=torch.float32, config=config)
    assert type(pipe).__name__ == "StableDiffusionXLImg2ImgPipeline" and pipe.text_encoder is None
    for name in ("unet", "vae", "text_encoder_2"):
        loaded = getattr(pipe, name).state_dict()
        for key, tensor in getattr(original, name).state_dict().items():
            assert torch.equal(loaded[key], tensor), f"{name}.{key}"
