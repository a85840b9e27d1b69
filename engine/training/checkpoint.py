"""Writing trained models and resumable checkpoints: safetensors + JSON, never pickle.

A model folder holds `config.json`, `model.safetensors`, `README.md` (the model card) and
`samples/`. The resume checkpoint sits beside it in `checkpoint/`: `state.safetensors` (every
tensor a trainer needs: weights, optimiser moments, EMA, random generator states) and
`state.json` (step, elapsed seconds, losses, config). Each file is written atomically, the JSON
last, so a crash mid-save leaves the previous checkpoint readable.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save

from engine.errors import InputError, ModelError
from engine.families.registry import CARD_FILE, CONFIG_FILE, FORMAT_VERSION, WEIGHTS_FILE
from engine.paths import atomic_write_bytes, atomic_write_text

CHECKPOINT_DIR = "checkpoint"
STATE_TENSORS = "state.safetensors"
STATE_JSON = "state.json"
COUNTERS_KEY = "easel_counters"


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict | None = None):
    """safetensors needs contiguous tensors that share no memory: copy where they would."""
    clean = {name: t.detach().to("cpu").contiguous().clone() for name, t in tensors.items()}
    meta = {k: str(v) for k, v in (metadata or {}).items()}
    atomic_write_bytes(path, save(clean, metadata=meta))


def save_model(out_dir: Path, state_dict: dict[str, torch.Tensor], config: dict[str, Any]):
    """Write weights then config (config last: its presence marks the folder as a model)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    config = {**config, "format": FORMAT_VERSION}
    save_tensors(out_dir / WEIGHTS_FILE, state_dict, {"family": config["family"]})
    atomic_write_text(out_dir / CONFIG_FILE, json.dumps(config, indent=2, sort_keys=True) + "\n")


def save_checkpoint(out_dir: Path, tensors: dict[str, torch.Tensor], counters: dict[str, Any]):
    """The counters travel inside the tensors file too (its metadata): one atomic write holds
    both, so a kill between the two files can never pair step N's weights with step N-1's
    counters. state.json is the readable copy."""
    folder = out_dir / CHECKPOINT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    counters = {**counters, "saved_at": time.strftime("%Y-%m-%d %H:%M:%S")}
    text = json.dumps(counters, indent=2, sort_keys=True) + "\n"
    save_tensors(folder / STATE_TENSORS, tensors, {COUNTERS_KEY: text})
    atomic_write_text(folder / STATE_JSON, text)


def has_checkpoint(out_dir: Path) -> bool:
    folder = out_dir / CHECKPOINT_DIR
    return (folder / STATE_JSON).is_file() or (folder / STATE_TENSORS).is_file()


def load_checkpoint(out_dir: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    folder = out_dir / CHECKPOINT_DIR
    if not has_checkpoint(out_dir):
        raise InputError(
            f"There is no checkpoint to resume in '{out_dir}'. Start a new run instead "
            "(untick resume), or pick the folder of the run you want to continue."
        )
    try:
        tensors = load_file(str(folder / STATE_TENSORS))
        counters = json.loads(_stored_counters(folder))
    except Exception as exc:  # any damage to the files: one clear message
        raise ModelError(
            f"The checkpoint in '{folder}' is damaged ({exc}); it cannot be resumed."
        ) from exc
    return tensors, counters


# -- optimiser state as flat tensors ----------------------------------------------------------
def _stored_counters(folder: Path) -> str:
    """The counters saved with the tensors (older checkpoints: state.json)."""
    from safetensors import safe_open

    with safe_open(str(folder / STATE_TENSORS), framework="pt") as handle:
        stored = (handle.metadata() or {}).get(COUNTERS_KEY)
    return stored or (folder / STATE_JSON).read_text(encoding="utf-8")


def optimizer_tensors(optimizer: torch.optim.Optimizer, prefix: str) -> dict[str, torch.Tensor]:
    """Flatten an optimiser's per-parameter state ({index: {name: tensor}}) into named tensors.

    Hyperparameters (lr, betas) are not stored: they come back from the config on resume.
    """
    flat = {}
    for index, values in optimizer.state_dict()["state"].items():
        for name, value in values.items():
            tensor = value if torch.is_tensor(value) else torch.tensor(value)
            flat[f"{prefix}.{index}.{name}"] = tensor
    return flat


def load_optimizer_tensors(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], prefix: str
) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        if not key.startswith(prefix + "."):
            continue
        index, name = key[len(prefix) + 1 :].split(".", 1)
        state.setdefault(int(index), {})[name] = tensor
    current = optimizer.state_dict()
    current["state"] = state
    optimizer.load_state_dict(current)


def module_tensors(module: torch.nn.Module, prefix: str) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v for k, v in module.state_dict().items()}


def load_module_tensors(module: torch.nn.Module, tensors: dict[str, torch.Tensor], prefix: str):
    start = prefix + "."
    module.load_state_dict({k[len(start) :]: v for k, v in tensors.items() if k.startswith(start)})


# -- model card ---------------------------------------------------------------------------------
def model_card(summary: dict[str, Any]) -> str:
    """The README.md a trained folder carries: what it was trained on, how long, how well."""
    config = summary["config"]
    lines = [
        f"# {summary.get('title') or config['family']} model trained with Easel",
        "",
        f"- Family: `{config['family']}` (architecture in `{CONFIG_FILE}`)",
        f"- Data source: {summary['data_source']}",
        f"- Images: {summary['image_count']} used, {summary['skipped_count']} unreadable skipped",
        f"- Resolution: {config['resolution']}x{config['resolution']}, "
        f"{config.get('channels', 3)} channels",
        f"- Steps: {summary['step']} of {summary['total_steps']} "
        f"(batch {summary['batch_size']}){' - stopped early' if summary['stopped'] else ''}",
        f"- Training time: {summary['elapsed_s']:.1f} s on {summary['device']}",
        f"- Final loss: {summary['final_loss']}",
        f"- Seed: {summary['seed']}",
    ]
    if config.get("classes"):
        lines.append(f"- Classes: {', '.join(config['classes'])}")
    lines += [
        f"- Licence: {summary.get('licence') or 'same terms as the training pictures'}",
        "",
        f"Sample from it with `easel generate --model {summary['out_dir']} -o out.png --seed 1`.",
        "",
    ]
    return "\n".join(lines)


def write_card(out_dir: Path, summary: dict[str, Any]) -> None:
    atomic_write_text(out_dir / CARD_FILE, model_card(summary))
