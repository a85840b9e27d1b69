"""Quality numbers for the built-in models' cards: FID/KID against held-out emoji, baselines, and
prompt faithfulness, all with the real FID Inception network (engine.metrics.fid).

    python scripts/builtin_cards.py reference     # held-out, training gallery and noise features
    python scripts/builtin_cards.py evaluate --model resources/models/emoji-ldm

On a 2-core CPU the Inception network costs about 1 s per picture, so the sets are sized to
that budget and every number is computed the same way: the held-out emoji (all of them) are the
reference; each compared set (noise, training emoji, a model's samples) has the same count.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from engine.datasets import emoji  # noqa: E402

COMPARED = 150  # pictures per compared set (noise, training, each model)
GALLERY = 600  # training emoji searched for a generated picture's nearest neighbour
FAITHFUL_PROMPTS = 20
SIMILAR_NAMES = 0.5  # MiniLM cosine similarity above which two emoji names count as close
STOP_WORDS = {"a", "an", "the", "of", "with", "and", "face", "button"}


def features_of(images: np.ndarray, batch: int = 16) -> np.ndarray:
    """2048-d FID Inception features of uint8 (N, H, W, 3) pictures."""
    from engine.metrics.fid import _run_network, load_inception, to_network_input

    net = load_inception()
    out = []
    started = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(images), batch):
            chunk = [to_network_input(Image.fromarray(p)) for p in images[i : i + batch]]
            out.append(_run_network(net, torch.stack(chunk), "cpu"))
            rate = (i + len(chunk)) / (time.perf_counter() - started)
            print(f"  features {i + len(chunk)}/{len(images)} ({rate:.2f}/s)", flush=True)
    return np.concatenate(out)


def reference_path(cache: Path | None) -> Path:
    return emoji.npz_path(cache, 0).with_name("fid-reference.npz")


def gallery_indices(train: emoji.EmojiSet, seed: int = 0) -> np.ndarray:
    """GALLERY training emoji, distinct base names first (skin-tone variants look alike)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(train.names))
    seen, first, rest = set(), [], []
    for i in order:
        base = emoji.base_name(str(train.names[i]))
        (rest if base in seen else first).append(i)
        seen.add(base)
    return np.array((first + rest)[:GALLERY])


def cmd_reference(args) -> None:
    torch.set_num_threads(args.threads)
    data = emoji.load_rendered(args.cache, 64)
    train, held = data.train(), data.test()
    gallery = gallery_indices(train)
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 256, (COMPARED, 64, 64, 3), dtype=np.uint8)
    print(f"held-out {len(held.names)}, gallery {len(gallery)}, noise {len(noise)}")
    held_f = features_of(held.images)
    gallery_f = features_of(train.images[gallery])
    noise_f = features_of(noise)
    np.savez(
        reference_path(args.cache),
        held_out=held_f,
        held_out_names=held.names,
        gallery=gallery_f,
        gallery_names=train.names[gallery],
        noise=noise_f,
    )
    print(f"wrote {reference_path(args.cache)}")


def fid_and_kid(features: np.ndarray, reference: np.ndarray) -> dict:
    from engine.metrics.distances import frechet_distance, kernel_inception_distance

    kid = kernel_inception_distance(features, reference)
    kid_value = kid[0] if isinstance(kid, tuple) else kid
    if isinstance(kid_value, dict):
        kid_value = kid_value.get("kid", kid_value.get("mean"))
    return {"fid": float(frechet_distance(features, reference)), "kid": float(kid_value)}


def names_close(prompt_name: str, other: str, similarity: float) -> bool:
    words = lambda n: {w for w in emoji.caption(n).split() if w not in STOP_WORDS}  # noqa: E731
    return similarity >= SIMILAR_NAMES or bool(words(prompt_name) & words(other))


def faithfulness(images, prompt_names, ref) -> dict:
    """Share of prompts whose picture's nearest gallery emoji (Inception space) has a close
    name, next to the chance rate of a random gallery emoji having a close name."""
    from engine.text.minilm import MiniLMEncoder

    feats = features_of(np.stack([np.asarray(i) for i in images]))
    gallery, gallery_names = ref["gallery"], [str(n) for n in ref["gallery_names"]]
    distances = ((feats[:, None, :] - gallery[None]) ** 2).sum(-1)
    nearest = distances.argmin(1)
    encoder = MiniLMEncoder()
    p_emb = encoder.encode([emoji.caption(n) for n in prompt_names])
    g_emb = encoder.encode([emoji.caption(n) for n in gallery_names])
    sims = (p_emb @ g_emb.T).numpy()
    rows, hits, chance = [], 0, []
    for i, name in enumerate(prompt_names):
        j = int(nearest[i])
        ok = names_close(name, gallery_names[j], float(sims[i, j]))
        hits += ok
        chance.append(
            np.mean(
                [
                    names_close(name, g, float(s))
                    for g, s in zip(gallery_names, sims[i], strict=True)
                ]
            )
        )
        rows.append(
            {
                "prompt": emoji.caption(name),
                "nearest": emoji.caption(gallery_names[j]),
                "similarity": round(float(sims[i, j]), 3),
                "close": bool(ok),
            }
        )
    return {"rate": hits / len(prompt_names), "chance_rate": float(np.mean(chance)), "rows": rows}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=None, help="dataset cache folder")
    parser.add_argument("--threads", type=int, default=1)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("reference", help="features of held-out, gallery and noise").set_defaults(
        run=cmd_reference
    )
    args = parser.parse_args(argv)
    args.run(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
