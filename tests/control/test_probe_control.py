"""ControlNets, IP-Adapters and image encoders are told from their tensors and configs."""

from __future__ import annotations

import torch
from safetensors.torch import save_file

from engine.library.probe import probe_path


def test_tiny_controlnets_probe_as_controlnets(control_models):
    for base in ("sd1", "sdxl"):
        for layout in ("folder", "file"):
            result = probe_path(control_models[f"cn_{base}"][layout])
            assert result.kind == "controlnet", result
            assert result.details["sdxl"] is (base == "sdxl")
    # an SDXL ControlNet is SDXL by its add-embedding whatever its width; the tiny SD 1.x one
    # has a width no published family has, so its base is left to the job's UNet check
    assert probe_path(control_models["cn_sdxl"]["file"]).base == "sdxl"
    assert probe_path(control_models["cn_sd1"]["file"]).base == ""
    assert probe_path(control_models["cn_sd1"]["file"]).details["context_dim"] == 32


def _file(tmp_path, name, shapes):
    path = tmp_path / name
    save_file({k: torch.zeros(s) for k, s in shapes.items()}, str(path))
    return path


def test_original_layout_controlnets_by_width(tmp_path):
    attn = "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"
    sd15 = _file(
        tmp_path,
        "control_v11p_sd15_canny.safetensors",
        {
            "control_model.input_hint_block.0.weight": (16, 3, 3, 3),
            f"control_model.{attn}": (8, 768),
        },
    )
    sd21 = _file(
        tmp_path, "sd21.safetensors", {"input_hint_block.0.weight": (16, 3, 3, 3), attn: (8, 1024)}
    )
    assert (probe_path(sd15).kind, probe_path(sd15).base) == ("controlnet", "sd1")
    assert probe_path(sd15).details["weights"] == "original"
    assert (probe_path(sd21).kind, probe_path(sd21).base) == ("controlnet", "sd2")


def test_ip_adapter_weights_by_width(tmp_path):
    sd15 = _file(
        tmp_path,
        "ip-adapter_sd15.safetensors",
        {"image_proj.proj.weight": (3072, 1024), "ip_adapter.1.to_k_ip.weight": (320, 768)},
    )
    sdxl = _file(
        tmp_path,
        "ip-adapter_sdxl.safetensors",
        {"image_proj.proj.weight": (8192, 1280), "ip_adapter.1.to_k_ip.weight": (640, 2048)},
    )
    assert (probe_path(sd15).kind, probe_path(sd15).base) == ("ip_adapter", "sd1")
    assert probe_path(sd15).details["image_embed_dim"] == 1024
    assert (probe_path(sdxl).kind, probe_path(sdxl).base) == ("ip_adapter", "sdxl")
