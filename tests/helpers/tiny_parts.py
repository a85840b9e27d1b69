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
