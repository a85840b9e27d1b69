"""What the built-in models' numbers are: the sets, FID/KID, and prompt faithfulness (a
generated picture's nearest training emoji in FID Inception space must have a name close to the
prompt). builtin_cards.py runs them and writes the cards; the experiments import them too.
"""

from __future__ import annotations

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

TEXT_FAMILIES = ("ldm", "dalle")  # the built-ins that take a prompt
COMPARED = 100  # pictures per compared set (noise, training, each model)
GALLERY = 600  # training emoji searched for a generated picture's nearest neighbour
FAITHFUL_PROMPTS = 20
SIMILAR_NAMES = 0.5  # MiniLM cosine similarity above which two emoji names count as close
#: words that do not make two names close: function words, and the skin-tone and gender words
#: shared by hundreds of People & Body emoji (matching on them would inflate the rate)
STOP_WORDS = {"a", "an", "the", "of", "with", "and", "face", "button", "light", "medium", "dark"}
STOP_WORDS |= {"man", "woman", "person", "in", "facing", "right", "left"}


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


def generate(
    model: str,
    prompts: list[str],
    *,
    seed: int = 0,
    threads: int = 1,
    candidates: int = 0,
    guidance: float = 3.0,
    extras: dict | None = None,
) -> list:
    """One picture per prompt (or per seed for unconditioned models) through the engine.
    `candidates` > 1: the DALL-E family makes that many and keeps the best (re-ranking)."""
    from engine.api import GenerationRequest, RuntimeOptions
    from engine.context import JobContext
    from engine.generate import run_generation

    ctx = JobContext(0, lambda event: None)
    images = []
    for i, prompt in enumerate(prompts):
        request = GenerationRequest(
            model=model,
            prompt=prompt,
            seed=seed + i,
            steps=20,
            sampler="DDIM",
            guidance_scale=guidance,
            extras={**(extras or {}), **({"candidates": candidates} if candidates > 1 else {})},
            runtime=RuntimeOptions(cpu_threads=threads),
        )
        images.append(run_generation(request, ctx).images[0].convert("RGB"))
        if (i + 1) % 25 == 0:
            print(f"  generated {i + 1}/{len(prompts)}", flush=True)
    return images


def rates_over_seeds(model: str, names, ref, count: int, first=None, **generate_args) -> dict:
    """Faithfulness of the same prompts drawn with `count` seeds (100, 1100, ...): with 20 names
    one picture more or less is 5 points, so a single seed's rate can mislead by 10."""
    prompts = [emoji.caption(n) for n in names]
    rates = [] if first is None else [first]
    for k in range(len(rates), count):
        pictures = generate(model, prompts, seed=100 + 1000 * k, **generate_args)
        rates.append(faithfulness(pictures, names, ref)["rate"])
    return {
        "seeds": [100 + 1000 * k for k in range(count)],
        "rates": rates,
        "mean": float(np.mean(rates)),
    }


def held_out_prompts(ref, count: int, seed: int) -> list[str]:
    """`count` held-out emoji names, distinct base names first, in a fixed random order."""
    names = [str(n) for n in ref["held_out_names"]]
    order = np.random.default_rng(seed).permutation(len(names))
    seen, first, rest = set(), [], []
    for i in order:
        base = emoji.base_name(names[i])
        (rest if base in seen else first).append(names[i])
        seen.add(base)
    return (first + rest)[:count]
