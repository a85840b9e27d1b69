"""The files that ship beside a built-in model's weights: the re-ranking gallery, the known
concepts and the weak UNet autoguidance pushes away from (subcommands `gallery`, `concepts` and
`guide` of build_builtin_models.py), and what the other
scripts share: the caption embeddings the concepts and the ldm training are both made from, and
the emoji as tensors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from engine.datasets import emoji  # noqa: E402


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) rendered emoji -> float (N, 3, H, W) in [-1, 1], as the models train."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def caption_embeddings(names, cache: Path | None) -> torch.Tensor:
    """(templates, N, 384) MiniLM embeddings of every caption template, cached on disk."""
    from engine.text.minilm import MiniLMEncoder

    path = emoji.npz_path(cache, 0).with_name("caption-embeddings.npz")
    captions = [emoji.caption(n) for n in names]
    if path.is_file():
        with np.load(path) as data:
            if list(data["captions"]) == captions:
                return torch.from_numpy(data["embeddings"])
    encoder = MiniLMEncoder()
    rows = [encoder.encode([t.format(c) for c in captions]) for t in emoji.CAPTION_TEMPLATES]
    embeddings = torch.stack(rows)
    np.savez(path, captions=np.array(captions), embeddings=embeddings.numpy())
    return embeddings


def add_gallery(folder: Path, cache: Path | None) -> int:
    """Store the FID reference's training gallery (Inception features of 600 training emoji,
    the same network and pictures the cards use) and MiniLM embeddings of their captions in a
    trained emoji-dalle folder, so re-ranking works without recomputing 600 features."""
    from builtin_measure import reference_path
    from safetensors.torch import load_file

    from engine.text.minilm import MiniLMEncoder
    from engine.training.checkpoint import save_model

    ref = np.load(reference_path(cache))
    features = torch.from_numpy(ref["gallery"]).half()
    captions = [emoji.caption(str(n)) for n in ref["gallery_names"]]
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    state = load_file(str(folder / "model.safetensors"))
    state["gallery_features"] = features
    state["gallery_captions"] = MiniLMEncoder().encode(captions).half()
    save_model(folder, state, {**config, "rerank_gallery": len(captions)})
    return len(captions)


def add_disjoint_gallery(folder: Path, cache: Path | None, count: int) -> int:
    """Write `rerank-gallery.safetensors` beside a model's weights: Inception features and
    caption embeddings of `count` training emoji drawn from those OUTSIDE the cards' measuring
    gallery, so the re-ranker and the faithfulness measure never consult the same pictures."""
    from builtin_measure import features_of, gallery_indices

    from engine.families.rerank import save_gallery
    from engine.text.minilm import MiniLMEncoder

    train = emoji.load_rendered(cache, 64).train()
    measured = set(gallery_indices(train).tolist())
    outside = np.array([i for i in range(len(train.names)) if i not in measured])
    chosen = np.sort(np.random.default_rng(7).permutation(outside)[:count])
    features = torch.from_numpy(features_of(train.images[chosen]))
    captions = [emoji.caption(str(train.names[i])) for i in chosen]
    source = f"{len(chosen)} Fluent Emoji training pictures outside the cards' measuring gallery"
    save_gallery(folder, features, MiniLMEncoder().encode(captions), source)
    return len(chosen)


def cmd_gallery(args) -> None:
    if args.beside:
        count = add_disjoint_gallery(args.model, args.cache, args.beside)
    else:
        count = add_gallery(args.model, args.cache)
    if args.candidates is not None:
        update_config(args.model, {"candidates": args.candidates})
    print(f"{args.model}: re-ranking gallery of {count} training emoji stored")


def cmd_concepts(args) -> None:
    """Store the training captions' MiniLM embeddings (the "{}" template the prompts use) as
    the model's known concepts (engine.text.concepts) and set its default steering."""
    from engine.text.concepts import save_concepts

    train = emoji.load_rendered(args.cache, 64).train()
    names = [str(n) for n in train.names]
    embeddings = caption_embeddings(names, args.cache)[emoji.CAPTION_TEMPLATES.index("{}")]
    captions = [emoji.caption(n) for n in names]
    path = save_concepts(args.model, captions, embeddings, "all-MiniLM-L6-v2")
    settings = {"concept_strength": args.strength, "concept_neighbours": args.neighbours}
    update_config(args.model, {k: v for k, v in settings.items() if v is not None})
    print(f"{path}: {len(set(captions))} known concepts, {settings}")


def cmd_guide(args) -> None:
    """Store a weaker model's UNet (an earlier checkpoint, or a smaller UNet trained on the same
    autoencoder: `ldm --ae-from DIR --base-channels N`) in a model folder as its autoguidance
    guide (engine.families.autoguide), and set the model's default scale. `--weak` is a model
    or build folder (config.json + model.safetensors)."""
    from engine.families.autoguide import denoiser_of, interface, save_guide
    from engine.families.registry import load_native_model

    unet = denoiser_of(load_native_model(args.model).model)
    weak = denoiser_of(load_native_model(args.weak).model)
    if unet is None or weak is None or interface(unet.config) != interface(weak.config):
        raise SystemExit(f"{args.weak} has no UNet that can guide {args.model}'s.")
    path = save_guide(args.model, weak)
    if args.scale is not None:
        update_config(args.model, {"autoguidance": args.scale})
    params = sum(p.numel() for p in weak.parameters())
    print(f"{path}: the {params:,}-parameter UNet of {args.weak}, {args.scale=}")


def update_config(folder: Path, changes: dict) -> None:
    """Rewrite a model folder's config.json with `changes`, as save_model writes it (the
    weights are not touched)."""
    if not changes:
        return
    from engine.paths import atomic_write_text

    path = folder / "config.json"
    config = {**json.loads(path.read_text(encoding="utf-8")), **changes}
    atomic_write_text(path, json.dumps(config, indent=2, sort_keys=True) + "\n")
