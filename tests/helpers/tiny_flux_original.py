"""A tiny FLUX.1 folder's transformer written in Black Forest Labs' original layout.

`flux_to_original` is the inverse of the conversion the engine does, written out here on its
own from diffusers' FluxTransformer2DModel names (it never calls engine code), so a mistake in
either one shows as a different picture. `save_original_transformer` writes it as a
transformer-only file (bare BFL names, or under ComfyUI's `model.diffusion_model.`),
`save_comfy_all_in_one` as ComfyUI's FLUX all-in-one checkpoint: `model.diffusion_model.`,
`vae.` (original VAE names), `text_encoders.clip_l.transformer.` and
`text_encoders.t5xxl.transformer.`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from tests.helpers.tiny_parts import _Config, _save, _weights
from tests.library.ldm_layout import _hf_clip_names, vae_to_ldm

COMFY = "model.diffusion_model."


def _pair(state: dict, out: dict, new: str, old: str) -> None:
    for kind in ("weight", "bias"):
        out[f"{old}.{kind}"] = state.pop(f"{new}.{kind}")


def _fuse(state: dict, out: dict, parts: list[str], old: str) -> None:
    for kind in ("weight", "bias"):
        out[f"{old}.{kind}"] = torch.cat([state.pop(f"{p}.{kind}") for p in parts], dim=0)


def flux_to_original(state: dict) -> dict:
    """A FluxTransformer2DModel state dict in BFL's names (what flux1-dev.safetensors holds)."""
    state = dict(state)
    out: dict = {}
    top = [
        ("time_text_embed.timestep_embedder.linear_1", "time_in.in_layer"),
        ("time_text_embed.timestep_embedder.linear_2", "time_in.out_layer"),
        ("time_text_embed.text_embedder.linear_1", "vector_in.in_layer"),
        ("time_text_embed.text_embedder.linear_2", "vector_in.out_layer"),
        ("context_embedder", "txt_in"),
        ("x_embedder", "img_in"),
        ("proj_out", "final_layer.linear"),
    ]
    if "time_text_embed.guidance_embedder.linear_1.weight" in state:  # dev; schnell has none
        top += [
            ("time_text_embed.guidance_embedder.linear_1", "guidance_in.in_layer"),
            ("time_text_embed.guidance_embedder.linear_2", "guidance_in.out_layer"),
        ]
    for new, old in top:
        _pair(state, out, new, old)
    for kind in ("weight", "bias"):  # diffusers (scale, shift) -> BFL (shift, scale)
        scale, shift = state.pop(f"norm_out.linear.{kind}").chunk(2, dim=0)
        out[f"final_layer.adaLN_modulation.1.{kind}"] = torch.cat([shift, scale], dim=0)
    for i in range(_blocks(state, "transformer_blocks.")):
        _double_block(state, out, i)
    for i in range(_blocks(state, "single_transformer_blocks.")):
        _single_block(state, out, i)
    assert not state, sorted(state)  # every tensor has its original name
    return out


def _blocks(state: dict, prefix: str) -> int:
    return 1 + max(int(k[len(prefix) :].split(".")[0]) for k in state if k.startswith(prefix))


def _double_block(state: dict, out: dict, i: int) -> None:
    src, dst = f"transformer_blocks.{i}.", f"double_blocks.{i}."
    _fuse(state, out, [f"{src}attn.to_{p}" for p in "qkv"], dst + "img_attn.qkv")
    _fuse(state, out, [f"{src}attn.add_{p}_proj" for p in "qkv"], dst + "txt_attn.qkv")
    for new, old in (
        ("norm1.linear", "img_mod.lin"),
        ("norm1_context.linear", "txt_mod.lin"),
        ("attn.to_out.0", "img_attn.proj"),
        ("attn.to_add_out", "txt_attn.proj"),
        ("ff.net.0.proj", "img_mlp.0"),
        ("ff.net.2", "img_mlp.2"),
        ("ff_context.net.0.proj", "txt_mlp.0"),
        ("ff_context.net.2", "txt_mlp.2"),
    ):
        _pair(state, out, src + new, dst + old)
    for new, old in (
        ("attn.norm_q", "img_attn.norm.query_norm"),
        ("attn.norm_k", "img_attn.norm.key_norm"),
        ("attn.norm_added_q", "txt_attn.norm.query_norm"),
        ("attn.norm_added_k", "txt_attn.norm.key_norm"),
    ):
        out[f"{dst}{old}.scale"] = state.pop(f"{src}{new}.weight")


def _single_block(state: dict, out: dict, i: int) -> None:
    src, dst = f"single_transformer_blocks.{i}.", f"single_blocks.{i}."
    parts = [f"{src}attn.to_{p}" for p in "qkv"] + [f"{src}proj_mlp"]
    _fuse(state, out, parts, dst + "linear1")
    _pair(state, out, src + "norm.linear", dst + "modulation.lin")
    _pair(state, out, src + "proj_out", dst + "linear2")
    out[f"{dst}norm.query_norm.scale"] = state.pop(f"{src}attn.norm_q.weight")
    out[f"{dst}norm.key_norm.scale"] = state.pop(f"{src}attn.norm_k.weight")


def original_state(folder: str | Path, *, prefix: str = "") -> dict:
    """The folder's transformer in BFL's names, each under `prefix`."""
    weights = flux_to_original(_weights(Path(folder) / "transformer"))
    return {prefix + k: v for k, v in weights.items()}


def save_original_transformer(folder: str | Path, out_file: str | Path, *, comfy: bool = False):
    """The folder's transformer alone in BFL's names (under ComfyUI's prefix when `comfy`)."""
    return _save(original_state(folder, prefix=COMFY if comfy else ""), Path(out_file))


def save_comfy_all_in_one(folder: str | Path, out_file: str | Path) -> Path:
    """The tiny FLUX.1 pipeline as one ComfyUI all-in-one checkpoint."""
    folder = Path(folder)
    state = original_state(folder, prefix=COMFY)
    vae_config = json.loads((folder / "vae" / "config.json").read_text())
    vae = vae_to_ldm(_weights(folder / "vae"), _Config(vae_config))
    state.update({"vae." + k.removeprefix("first_stage_model."): v for k, v in vae.items()})
    clip = _hf_clip_names(_weights(folder / "text_encoder"))
    state.update({"text_encoders.clip_l.transformer." + k: v for k, v in clip.items()})
    t5 = _weights(folder / "text_encoder_2")
    state.update({"text_encoders.t5xxl.transformer." + k: v for k, v in t5.items()})
    return _save(state, Path(out_file))
