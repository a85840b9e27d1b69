"""A tiny SD3 / FLUX.1 diffusers folder taken apart the way ComfyUI users hold real models.

`save_separate_files` writes the transformer alone plus one file per text encoder and the VAE
(`models/diffusion_models`, `models/text_encoders`, `models/vae`), in the key layouts those
files have in the wild: Hugging Face names for CLIP-L and T5 (as comfyanonymous' clip_l and
t5xxl files), OpenCLIP names for CLIP-G when asked (as Stability's own), and the original
(LDM) names for the VAE (as BFL's ae.safetensors). `write_config_folder` writes the folder's
configs without any weight or tokenizer, with an easel.json naming the bundled tokenizers: the
layout of resources/configs/sd3-medium or flux-dev, at the tiny model's sizes.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from tests.helpers.tiny_modern import save_transformer_file
from tests.library.ldm_layout import _hf_clip_names, open_clip_to_ldm, vae_to_ldm

TOKENIZERS = {
    "StableDiffusion3Pipeline": {"tokenizer": "clip", "tokenizer_2": "clip-g", "tokenizer_3": "t5"},
    "FluxPipeline": {"tokenizer": "clip", "tokenizer_2": "t5"},
}


def _weights(folder: Path) -> dict:
    state = {}
    for part in sorted(folder.glob("*.safetensors")):
        state.update(load_file(str(part)))
    return state


def _save(state: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def save_separate_files(folder: str | Path, models: str | Path, *, open_clip_g: bool = True):
    """{part: file} for the pipeline in `folder`, written under `models` (ComfyUI layout)."""
    folder, models = Path(folder), Path(models)
    index = json.loads((folder / "model_index.json").read_text())
    flux = index["_class_name"].startswith("Flux")
    out = {
        "transformer": save_transformer_file(
            folder, _mkdir(models / "diffusion_models") / "tiny-t.safetensors"
        )
    }
    encoders = models / "text_encoders"
    out["clip_l"] = _save(
        _hf_clip_names(_weights(folder / "text_encoder")), encoders / "clip_l.safetensors"
    )
    t5_folder = folder / ("text_encoder_2" if flux else "text_encoder_3")
    out["t5"] = _save(_weights(t5_folder), encoders / "t5xxl_fp16.safetensors")
    if not flux:
        clip_g = _weights(folder / "text_encoder_2")
        clip_g = open_clip_to_ldm(clip_g, "") if open_clip_g else _hf_clip_names(clip_g)
        out["clip_g"] = _save(clip_g, encoders / "clip_g.safetensors")
    vae_config = json.loads((folder / "vae" / "config.json").read_text())
    vae = vae_to_ldm(_weights(folder / "vae"), _Config(vae_config))
    vae = {k.removeprefix("first_stage_model."): v for k, v in vae.items()}  # as ae.safetensors
    out["vae"] = _save(vae, models / "vae" / ("ae.safetensors" if flux else "sd3_vae.safetensors"))
    return out


class _Config:
    def __init__(self, values: dict):
        self.__dict__.update(values)


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_config_folder(folder: str | Path, out: str | Path) -> Path:
    """The pipeline folder's configs (model_index.json, */config.json, the scheduler's), no
    weights and no tokenizer files: easel.json names the bundled tokenizers instead."""
    folder, out = Path(folder), Path(out)
    index = json.loads((folder / "model_index.json").read_text())
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(folder / "model_index.json", out / "model_index.json")
    for component in index:
        if component.startswith(("_", "tokenizer")):
            continue
        for name in ("config.json", "scheduler_config.json"):
            source = folder / component / name
            if source.is_file():
                _mkdir(out / component)
                shutil.copy(source, out / component / name)
    easel = {"source": "tiny test model", "tokenizers": TOKENIZERS[index["_class_name"]]}
    (out / "easel.json").write_text(json.dumps(easel, indent=2))
    return out


def _swap_halves(weight):
    """diffusers' swap_scale_shift, its own inverse: (shift, scale) <-> (scale, shift)."""
    first, second = weight.chunk(2, dim=0)
    return torch.cat([second, first], dim=0)


def sd3_to_original(state: dict) -> dict:
    """An SD3 transformer's diffusers state dict in Stability's original (MMDiT) names: the
    reverse of diffusers' convert_sd3_transformer_checkpoint_to_diffusers."""
    state = dict(state)
    layers = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("transformer_blocks."))
    out = {
        "pos_embed": state.pop("pos_embed.pos_embed"),
        "x_embedder.proj.weight": state.pop("pos_embed.proj.weight"),
        "x_embedder.proj.bias": state.pop("pos_embed.proj.bias"),
        "final_layer.linear.weight": state.pop("proj_out.weight"),
        "final_layer.linear.bias": state.pop("proj_out.bias"),
        "final_layer.adaLN_modulation.1.weight": _swap_halves(state.pop("norm_out.linear.weight")),
        "final_layer.adaLN_modulation.1.bias": _swap_halves(state.pop("norm_out.linear.bias")),
    }
    fixed = {
        "time_text_embed.timestep_embedder.linear_1": "t_embedder.mlp.0",
        "time_text_embed.timestep_embedder.linear_2": "t_embedder.mlp.2",
        "time_text_embed.text_embedder.linear_1": "y_embedder.mlp.0",
        "time_text_embed.text_embedder.linear_2": "y_embedder.mlp.2",
        "context_embedder": "context_embedder",
    }
    for new, old in fixed.items():
        for kind in ("weight", "bias"):
            out[f"{old}.{kind}"] = state.pop(f"{new}.{kind}")
    for i in range(layers):
        _joint_block(state, out, i, last=i == layers - 1)
    assert not state, sorted(state)  # every tensor has its original name
    return out


def _joint_block(state: dict, out: dict, i: int, *, last: bool) -> None:
    src, dst = f"transformer_blocks.{i}.", f"joint_blocks.{i}."
    x, c = dst + "x_block.", dst + "context_block."
    for kind in ("weight", "bias"):
        qkv = [state.pop(f"{src}attn.to_{p}.{kind}") for p in "qkv"]
        out[f"{x}attn.qkv.{kind}"] = torch.cat(qkv)
        qkv = [state.pop(f"{src}attn.add_{p}_proj.{kind}") for p in "qkv"]
        out[f"{c}attn.qkv.{kind}"] = torch.cat(qkv)
        out[f"{x}attn.proj.{kind}"] = state.pop(f"{src}attn.to_out.0.{kind}")
        out[f"{x}adaLN_modulation.1.{kind}"] = state.pop(f"{src}norm1.linear.{kind}")
        context_norm = state.pop(f"{src}norm1_context.linear.{kind}")
        out[f"{c}adaLN_modulation.1.{kind}"] = _swap_halves(context_norm) if last else context_norm
        out[f"{x}mlp.fc1.{kind}"] = state.pop(f"{src}ff.net.0.proj.{kind}")
        out[f"{x}mlp.fc2.{kind}"] = state.pop(f"{src}ff.net.2.{kind}")
        if not last:  # the last block's context stream ends before its output projection
            out[f"{c}attn.proj.{kind}"] = state.pop(f"{src}attn.to_add_out.{kind}")
            out[f"{c}mlp.fc1.{kind}"] = state.pop(f"{src}ff_context.net.0.proj.{kind}")
            out[f"{c}mlp.fc2.{kind}"] = state.pop(f"{src}ff_context.net.2.{kind}")
        if f"{src}attn2.to_q.{kind}" in state:
            qkv = [state.pop(f"{src}attn2.to_{p}.{kind}") for p in "qkv"]
            out[f"{x}attn2.qkv.{kind}"] = torch.cat(qkv)
            out[f"{x}attn2.proj.{kind}"] = state.pop(f"{src}attn2.to_out.0.{kind}")
    for name, old in (("norm_q", "ln_q"), ("norm_k", "ln_k")):
        for attention in ("attn", "attn2"):
            if f"{src}{attention}.{name}.weight" in state:
                out[f"{x}{attention}.{old}.weight"] = state.pop(f"{src}{attention}.{name}.weight")
        added = name.replace("norm_", "norm_added_")
        if f"{src}attn.{added}.weight" in state:
            out[f"{c}attn.{old}.weight"] = state.pop(f"{src}attn.{added}.weight")


def save_sd3_all_in_one(folder: str | Path, out_file: str | Path, *, with_t5: bool = True):
    """The tiny SD3 pipeline as one original all-in-one file (ComfyUI / Stability layout):
    `model.diffusion_model.` MMDiT, `first_stage_model.` VAE, `text_encoders.*` encoders."""
    folder = Path(folder)
    state = {
        "model.diffusion_model." + k: v
        for k, v in sd3_to_original(_weights(folder / "transformer")).items()
    }
    vae_config = json.loads((folder / "vae" / "config.json").read_text())
    state.update(vae_to_ldm(_weights(folder / "vae"), _Config(vae_config)))
    encoders = [("clip_l", "text_encoder"), ("clip_g", "text_encoder_2")]
    for name, component in encoders:
        prefix = f"text_encoders.{name}.transformer."
        weights = _hf_clip_names(_weights(folder / component))
        state.update({prefix + k: v for k, v in weights.items()})
    if with_t5:
        prefix = "text_encoders.t5xxl.transformer."
        state.update({prefix + k: v for k, v in _weights(folder / "text_encoder_3").items()})
    return _save(state, Path(out_file))
