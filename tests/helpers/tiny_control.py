"""Tiny randomly initialised ControlNets, CLIP image encoders and IP-Adapter weights for tests.

A ControlNet is built with `ControlNetModel.from_unet` from a tiny pipeline's own UNet (as real
ControlNets start from their base UNet), its zero convolutions randomised so it visibly steers,
and saved as a diffusers folder and as one `.safetensors` file (diffusers key layout).
"""

from __future__ import annotations

from pathlib import Path

import torch


def _unet(pipeline_folder: Path):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel.from_pretrained(str(Path(pipeline_folder) / "unet"))


def build_controlnet(
    pipeline_folder: str | Path, out_dir: str | Path, *, seed: int = 3, std: float = 0.3
) -> dict:
    """{"folder": <diffusers folder>, "file": <single .safetensors>} for the pipeline's UNet;
    `std` of the randomised zero convolutions sets how strongly it steers."""
    from diffusers import ControlNetModel
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    controlnet = ControlNetModel.from_unet(_unet(Path(pipeline_folder)))
    with torch.no_grad():
        for name, param in controlnet.named_parameters():
            # zero-initialised in training; random here so the unit changes the picture
            if "controlnet_" in name or "conv_out" in name:
                param.normal_(std=std)
    out_dir = Path(out_dir)
    folder = out_dir / f"controlnet-{seed}"
    controlnet.save_pretrained(str(folder))
    single = out_dir / f"controlnet-{seed}.safetensors"
    state = {k: v.contiguous() for k, v in controlnet.state_dict().items()}
    save_file(state, str(single))
    return {"folder": folder, "file": single}


def build_image_encoder(
    folder: str | Path, *, projection_dim: int = 16, hidden_size: int = 32, seed: int = 7
) -> Path:
    """A tiny CLIPVisionModelWithProjection (32 px, 8 px patches) saved as a diffusers-style
    `image_encoder` folder (config.json + model.safetensors), as h94/IP-Adapter ships one."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    config = CLIPVisionConfig(
        hidden_size=hidden_size,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        image_size=32,
        patch_size=8,
        projection_dim=projection_dim,
    )
    encoder = CLIPVisionModelWithProjection(config).eval()
    encoder.save_pretrained(str(folder))
    return Path(folder)


def ip_adapter_tensors(
    pipeline_folder: str | Path,
    *,
    image_embed_dim: int = 16,
    seed: int = 11,
    tokens: int = 4,
    plus: bool = False,
) -> dict[str, torch.Tensor]:
    """Random IP-Adapter weights in h94's safetensors key layout for the pipeline's UNet.

    `image_proj.proj` maps one CLIP image embedding to `tokens` context tokens of the UNet's
    cross-attention width (then `image_proj.norm`); every cross-attention layer gets
    `ip_adapter.N.to_k_ip` / `to_v_ip` (width -> that layer's channels). N counts attention
    processors in the UNet's order from 1, self-attention included, so cross-attention layers
    are the odd numbers (diffusers reads them the same way).

    `plus`: IP-Adapter Plus, whose `image_proj` is a perceiver resampler reading the encoder's
    penultimate hidden states (`image_embed_dim` is then the encoder's hidden width)."""
    unet = _unet(Path(pipeline_folder))
    width = int(unet.config.cross_attention_dim)
    generator = torch.Generator().manual_seed(seed)

    def rand(*shape, std):
        return (torch.randn(*shape, generator=generator) * std).contiguous()

    if plus:
        tensors = _resampler_tensors(rand, image_embed_dim, width, tokens)
    else:
        tensors = {
            "image_proj.proj.weight": rand(tokens * width, image_embed_dim, std=0.5),
            "image_proj.proj.bias": rand(tokens * width, std=0.1),
            "image_proj.norm.weight": 1.0 + rand(width, std=0.1),
            "image_proj.norm.bias": rand(width, std=0.1),
        }
    key_id = 1
    for name in unet.attn_processors:
        if name.endswith("attn2.processor"):
            channels = _channels(unet, name)
            tensors[f"ip_adapter.{key_id}.to_k_ip.weight"] = rand(channels, width, std=0.4)
            tensors[f"ip_adapter.{key_id}.to_v_ip.weight"] = rand(channels, width, std=0.4)
            key_id += 2
    return tensors


def _resampler_tensors(rand, embed_dims: int, width: int, tokens: int, depth: int = 4) -> dict:
    """h94's Resampler keys (IP-Adapter Plus): latent queries, proj_in/out, and per layer a
    perceiver attention (norm1, norm2, to_q, to_kv, to_out; heads of 64) and a feed-forward
    (LayerNorm, Linear x4, GELU, Linear). Four layers, as every published Plus adapter has
    (diffusers assumes four)."""
    dim, inner = 64, 64  # one head of 64, the width diffusers derives the head count from
    tensors = {
        "image_proj.latents": rand(1, tokens, dim, std=dim**-0.5),
        "image_proj.proj_in.weight": rand(dim, embed_dims, std=0.3),
        "image_proj.proj_in.bias": rand(dim, std=0.05),
        "image_proj.proj_out.weight": rand(width, dim, std=0.3),
        "image_proj.proj_out.bias": rand(width, std=0.05),
        "image_proj.norm_out.weight": 1.0 + rand(width, std=0.1),
        "image_proj.norm_out.bias": rand(width, std=0.1),
    }
    for layer in range(depth):
        prefix = f"image_proj.layers.{layer}"
        for norm in ("norm1", "norm2"):
            tensors[f"{prefix}.0.{norm}.weight"] = 1.0 + rand(dim, std=0.1)
            tensors[f"{prefix}.0.{norm}.bias"] = rand(dim, std=0.1)
        tensors[f"{prefix}.0.to_q.weight"] = rand(inner, dim, std=0.2)
        tensors[f"{prefix}.0.to_kv.weight"] = rand(2 * inner, dim, std=0.2)
        tensors[f"{prefix}.0.to_out.weight"] = rand(dim, inner, std=0.2)
        tensors[f"{prefix}.1.0.weight"] = 1.0 + rand(dim, std=0.1)
        tensors[f"{prefix}.1.0.bias"] = rand(dim, std=0.1)
        tensors[f"{prefix}.1.1.weight"] = rand(4 * dim, dim, std=0.2)
        tensors[f"{prefix}.1.3.weight"] = rand(dim, 4 * dim, std=0.2)
    return tensors


def _channels(unet, processor_name: str) -> int:
    blocks = list(unet.config.block_out_channels)
    if processor_name.startswith("mid_block"):
        return blocks[-1]
    index = int(processor_name.split(".")[1])
    return list(reversed(blocks))[index] if processor_name.startswith("up_") else blocks[index]


def build_ip_adapter(
    pipeline_folder: str | Path,
    out_file: str | Path,
    *,
    image_embed_dim: int = 16,
    seed: int = 11,
    plus: bool = False,
) -> Path:
    """A tiny IP-Adapter `.safetensors` for the pipeline's UNet (see `ip_adapter_tensors`)."""
    from safetensors.torch import save_file

    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    tensors = ip_adapter_tensors(
        pipeline_folder, image_embed_dim=image_embed_dim, seed=seed, plus=plus
    )
    save_file(tensors, str(out_file))
    return out_file


_CONTROLNET_FIXED = {  # what a ControlNet has beyond its UNet encoder copy
    "controlnet_cond_embedding.conv_in": "input_hint_block.0",
    "controlnet_cond_embedding.conv_out": "input_hint_block.14",
    "controlnet_mid_block": "middle_block_out.0",
}


def original_layout_key(key: str, layers_per_block: int) -> str:
    """A diffusers ControlNet key in lllyasviel's original layout (what ControlNet 1.1 files
    hold), the inverse of diffusers' `convert_controlnet_checkpoint`: the encoder half is
    named as in a UNet (tests/library/ldm_layout.py), the control parts here."""
    import re

    from tests.library.ldm_layout import unet_key

    module, _, param = key.rpartition(".")
    if module in _CONTROLNET_FIXED:
        return f"{_CONTROLNET_FIXED[module]}.{param}"
    if found := re.fullmatch(r"controlnet_down_blocks\.(\d+)\.(.+)", key):
        return f"zero_convs.{found[1]}.0.{found[2]}"
    if found := re.fullmatch(r"controlnet_cond_embedding\.blocks\.(\d+)\.(.+)", key):
        return f"input_hint_block.{2 * (int(found[1]) + 1)}.{found[2]}"
    return unet_key(key, layers_per_block + 1, up_has_attention=[])


def save_original_layout(controlnet_folder: str | Path, out_file: str | Path) -> Path:
    """The diffusers ControlNet folder re-saved as an original-layout single file
    (`control_model.` prefix, ldm names), as lllyasviel's .safetensors releases are."""
    from diffusers import ControlNetModel
    from safetensors.torch import save_file

    model = ControlNetModel.from_pretrained(str(controlnet_folder))
    lpb = model.config.layers_per_block
    state = {
        "control_model." + original_layout_key(k, lpb): v.contiguous()
        for k, v in model.state_dict().items()
    }
    save_file(state, str(out_file))
    return Path(out_file)
