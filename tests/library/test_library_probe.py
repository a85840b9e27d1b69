"""Probing decides what a model is from its tensors and metadata, never from its name."""

from __future__ import annotations

import json
import os
import shutil
import struct

import pytest

from engine.library.probe import probe_path
from engine.paths import resource

from .builders import U, refiner_shapes, sd1_shapes, sd2_shapes, sdxl_shapes, write_stripped

V_BIAS = U + "output_blocks.11.1.transformer_blocks.0.norm1.bias"


@pytest.mark.parametrize(
    "shapes, base, variant, config",
    [
        (sd1_shapes(), "sd1", "", "sd1"),
        (sd1_shapes(9), "sd1", "inpaint", "sd1-inpaint"),
        (sdxl_shapes(), "sdxl", "", "sdxl-base"),
        (sdxl_shapes(9), "sdxl", "inpaint", "sdxl-inpaint"),
        (refiner_shapes(), "sdxl-refiner", "", "sdxl-refiner"),
    ],
)
def test_checkpoint_families(tmp_path, shapes, base, variant, config):
    # Misleading file names on purpose: only content may decide.
    result = probe_path(write_stripped(tmp_path / "sd15-xl-inpainting.safetensors", shapes))
    assert (result.kind, result.base, result.variant, result.config) == (
        "checkpoint",
        base,
        variant,
        config,
    )
    assert result.ok and result.layout == "single_file"


def test_sd2_prediction_type_from_metadata_weights_or_default(tmp_path):
    by_meta = write_stripped(
        tmp_path / "a.safetensors",
        sd2_shapes(),
        metadata={"modelspec.architecture": "stable-diffusion-v2-768-v"},
    )
    assert probe_path(by_meta).variant == "v_prediction"
    eps_meta = write_stripped(
        tmp_path / "b.safetensors", sd2_shapes(), metadata={"modelspec.prediction_type": "epsilon"}
    )
    assert probe_path(eps_meta).config == "sd2-512"
    # No metadata: ComfyUI's rule on one bias (std > 0.09 means v-prediction).
    wide = [(-1) ** i * 0.5 for i in range(320)]
    narrow = [0.001 * (i % 3) for i in range(320)]
    v_file = write_stripped(tmp_path / "c.safetensors", sd2_shapes(), values={V_BIAS: wide})
    eps_file = write_stripped(tmp_path / "d.safetensors", sd2_shapes(), values={V_BIAS: narrow})
    assert (probe_path(v_file).variant, probe_path(v_file).config) == ("v_prediction", "sd2-768-v")
    assert (probe_path(eps_file).variant, probe_path(eps_file).config) == ("epsilon", "sd2-512")
    # Nothing to go on: variant unknown, loaded with the documented default (768 v-prediction).
    unknown = probe_path(write_stripped(tmp_path / "e.safetensors", sd2_shapes()))
    assert (unknown.base, unknown.variant, unknown.config) == ("sd2", "unknown", "sd2-768-v")


def test_sdxl_v_prediction_key(tmp_path):
    shapes = {**sdxl_shapes(), "v_pred": (0,)}
    assert probe_path(write_stripped(tmp_path / "x.safetensors", shapes)).variant == "v_prediction"


def test_sd3_and_flux_are_recognised_from_one_key(tmp_path):
    # variants and layouts in detail: tests/library/test_probe_modern.py
    sd3 = {U + "joint_blocks.0.context_block.attn.qkv.weight": (4608, 1536)}
    flux = {"double_blocks.0.img_attn.qkv.weight": (9216, 3072)}
    for name, shapes, base in (("a", sd3, "sd3"), ("b", flux, "flux")):
        result = probe_path(write_stripped(tmp_path / f"{name}.safetensors", shapes))
        assert (result.base, result.status, result.kind) == (base, "ok", "checkpoint")


def test_incomplete_and_odd_checkpoints(tmp_path):
    unet_only = {k: v for k, v in sd1_shapes().items() if k.startswith(U)}
    result = probe_path(write_stripped(tmp_path / "a.safetensors", unet_only))
    assert result.status == "unsupported" and "VAE or text encoder" in result.reason
    pix2pix = probe_path(write_stripped(tmp_path / "b.safetensors", sd1_shapes(8)))
    assert pix2pix.status == "unsupported" and "instruct-pix2pix" in pix2pix.reason


MID_K = "mid_block_attentions_0_transformer_blocks_0_attn2_to_k"
IN4_K = "input_blocks_4_1_transformer_blocks_0_attn2_to_k"
PEFT_K = "unet.mid_block.attentions.0.transformer_blocks.0.attn2.to_k"
FC1 = "text_model_encoder_layers_0_mlp_fc1"


@pytest.mark.parametrize(
    "shapes, base",
    [
        ({f"lora_unet_{MID_K}.lora_down.weight": (4, 768)}, "sd1"),
        ({f"{PEFT_K}.lora_A.weight": (8, 1024)}, "sd2"),
        ({f"lora_unet_{IN4_K}.lora_down.weight": (4, 2048)}, "sdxl"),
        ({f"lora_te2_{FC1}.lora_down.weight": (4, 1280)}, "sdxl"),
        ({f"lora_te_{FC1}.lora_down.weight": (4, 768)}, "sd1"),
    ],
)
def test_lora_base_from_shapes(tmp_path, shapes, base):
    up = {
        k.replace("down", "up").replace("lora_A", "lora_B"): (v[1], v[0]) for k, v in shapes.items()
    }
    result = probe_path(write_stripped(tmp_path / "l.safetensors", {**shapes, **up}))
    assert (result.kind, result.base, result.status) == ("lora", base, "ok")


def test_flux_lora_and_lora_with_unknown_target(tmp_path):
    flux = {"lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight": (4, 3072)}
    assert probe_path(write_stripped(tmp_path / "f.safetensors", flux)).base == "flux"
    odd = {"lora_unet_something.lora_down.weight": (4, 77)}
    result = probe_path(write_stripped(tmp_path / "o.safetensors", odd))
    assert (result.kind, result.status) == ("lora", "unknown")
    meta = {"ss_base_model_version": "sdxl_base_v1-0"}
    assert probe_path(write_stripped(tmp_path / "m.safetensors", odd, metadata=meta)).base == "sdxl"


def test_standalone_vae(tmp_path):
    shapes = {"encoder.conv_in.weight": (128, 3, 3, 3), "decoder.conv_in.weight": (512, 4, 3, 3)}
    result = probe_path(write_stripped(tmp_path / "v.safetensors", shapes))
    assert (result.kind, result.status, result.details["fits"]) == ("vae", "ok", "sd1, sd2, sdxl")
    meta = {"modelspec.architecture": "stable-diffusion-xl-v1-base/vae"}
    assert (
        probe_path(write_stripped(tmp_path / "x.safetensors", shapes, metadata=meta)).base == "sdxl"
    )
    flux_vae = {**shapes, "decoder.conv_in.weight": (512, 16, 3, 3)}
    sixteen = probe_path(write_stripped(tmp_path / "f.safetensors", flux_vae))
    assert (sixteen.status, sixteen.variant, sixteen.details["fits"]) == (
        "ok",
        "16-channel",
        "sd3, flux",
    )


def test_unknown_tensors_say_why(tmp_path):
    result = probe_path(write_stripped(tmp_path / "u.safetensors", {"foo.weight": (3, 3)}))
    assert (result.kind, result.status) == ("unknown", "unknown")
    assert "no known model layout" in result.reason


def _header_file(path, header_bytes, claimed=None, extra=b""):
    length = len(header_bytes) if claimed is None else claimed
    path.write_bytes(struct.pack("<Q", length) + header_bytes + extra)
    return path


def test_broken_files_are_reported_not_raised(tmp_path):
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    tiny = tmp_path / "tiny.safetensors"
    tiny.write_bytes(b"\x01\x02")
    good_header = json.dumps({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})
    attn = U + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"
    odd_shape = json.dumps(
        {
            U + "input_blocks.0.0.weight": {
                "dtype": "F16",
                "shape": [1, 4],
                "data_offsets": [0, 0],
            },
            attn: {"dtype": "F16", "shape": [1, [768]], "data_offsets": [0, 0]},
        }
    )
    cases = {
        empty: "empty",
        tiny: "too small",
        _header_file(tmp_path / "claim.safetensors", b"{}", claimed=10_000): "truncated",
        _header_file(tmp_path / "huge.safetensors", b"{}", claimed=2**62): "more than any",
        _header_file(tmp_path / "json.safetensors", b"{not json"): "not valid JSON",
        _header_file(
            tmp_path / "cut.safetensors", good_header.encode(), extra=b"1234"
        ): "truncated",
        _header_file(tmp_path / "list.safetensors", b"[1, 2]"): "not a JSON object",
        _header_file(tmp_path / "shape.safetensors", odd_shape.encode()): "shapes are malformed",
    }
    for path, words in cases.items():
        result = probe_path(path)
        assert (result.kind, result.status) == ("broken", "broken"), path.name
        assert words in result.reason, (path.name, result.reason)


def test_diffusers_and_native_folders(tmp_path):
    for name, base, variant in (
        ("sdxl-base", "sdxl", ""),
        ("sd2-768-v", "sd2", "v_prediction"),
        ("sd1-inpaint", "sd1", "inpaint"),
        ("sdxl-refiner", "sdxl-refiner", ""),
    ):
        folder = shutil.copytree(resource("configs", name), tmp_path / f"m-{name}")
        result = probe_path(folder)
        assert (result.kind, result.layout, result.base, result.variant) == (
            "checkpoint",
            "diffusers",
            base,
            variant,
        )
    flux = tmp_path / "flux"
    flux.mkdir()
    (flux / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    assert probe_path(flux).status == "broken"  # no transformer/config.json
    native = tmp_path / "native"
    native.mkdir()
    (native / "config.json").write_text(json.dumps({"family": "dcgan", "resolution": 64}))
    assert (probe_path(native).kind, probe_path(native).base) == ("native", "dcgan")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model_index.json").write_text("{oops")
    assert probe_path(bad).status == "broken"


def test_pickles_are_probed_weights_only_and_malicious_ones_refused(tmp_path):
    import torch

    lora = tmp_path / "lora.pt"
    key = "lora_unet_mid_block_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight"
    torch.save({"state_dict": {key: torch.zeros(4, 768)}}, lora)
    assert (probe_path(lora).kind, probe_path(lora).base) == ("lora", "sd1")

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "payload": Evil()}, evil)
    result = probe_path(evil)
    assert not marker.exists(), "unpickling ran code"
    assert (result.kind, result.status) == ("broken", "unsafe")
    assert "needs to run code" in result.reason and "safetensors" in result.reason


def test_upscaler_is_detected_through_spandrel(tmp_path):
    from safetensors.torch import save_file

    from .builders import tiny_esrgan

    path = tmp_path / "up.safetensors"
    save_file(tiny_esrgan().state_dict(), path)
    result = probe_path(path)
    assert (result.kind, result.base, result.status) == ("upscaler", "ESRGAN", "ok")
