"""Known concepts: steer a prompt toward the captions a small text-to-image model was trained on.

A model trained on a few thousand captions has learned pictures only for the part of MiniLM's
embedding space those captions fill. A prompt it never saw ("grinning cat") embeds somewhere
between them, and the network, asked for a conditioning vector it was never trained on, draws a
blend of unrelated things. Retrieval-conditioned generators avoid this by conditioning on
the prompt's nearest neighbours from the training set (kNN-Diffusion, Sheynin et al. 2022;
retrieval-augmented diffusion, Blattmann et al. 2022); this is the text-side version of it:

    steered = normalise((1 - s) * prompt + s * sum_i w_i * caption_i),
    w = softmax(similarity(prompt, caption_i) / temperature) over the k nearest captions

`s` (the strength, 0..1) moves the prompt into the region the model knows; a prompt that *is*
a training caption barely moves (its nearest caption is itself). The captions are stored beside
the weights (`concepts.safetensors`: the unit embeddings, half precision, and the caption texts
in the header), so the picture's metadata can say which known concepts it leaned on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from engine.errors import InputError, ModelError

CONCEPTS_FILE = "concepts.safetensors"
DEFAULT_NEIGHBOURS = 4
DEFAULT_TEMPERATURE = 0.05  # MiniLM similarities of close captions differ by a few hundredths
STRENGTH_EXTRA = "concept_strength"  # request.extras knob; the model's config has the default
REPORTED_NEIGHBOURS = 3  # known concepts named in a picture's metadata
#: below this MiniLM similarity to its nearest caption a prompt is news to the model (names of
#: the same emoji in other words score about 0.8 and up; "octopus" vs "squid" 0.6)
FAMILIAR_SIMILARITY = 0.8


@dataclass(frozen=True)
class Steered:
    """The conditioning embedding (1, D) and the known concepts it leaned on, nearest first."""

    embedding: torch.Tensor
    neighbours: tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class ConceptSet:
    """Unit caption embeddings (N, D) float32 and their texts, as the model was trained on."""

    captions: tuple[str, ...]
    embeddings: torch.Tensor
    text_encoder: str = ""

    def nearest(self, query: torch.Tensor, k: int) -> list[tuple[str, float]]:
        """The k captions most similar to one unit embedding (D,) or (1, D), nearest first."""
        sims = self.embeddings @ query.reshape(-1).float().cpu()
        values, indices = sims.topk(min(k, len(self.captions)))
        return [(self.captions[i], float(v)) for v, i in zip(values, indices.tolist(), strict=True)]

    def steer(
        self,
        query: torch.Tensor,
        strength: float,
        *,
        k: int = DEFAULT_NEIGHBOURS,
        temperature: float = DEFAULT_TEMPERATURE,
    ) -> Steered:
        """`query` (1, D) moved `strength` of the way to its neighbours' weighted mean."""
        if not 0.0 <= strength <= 1.0:
            raise ValueError("strength must lie in [0, 1]")
        flat = query.reshape(-1).float().cpu()
        sims = self.embeddings @ flat
        values, indices = sims.topk(min(k, len(self.captions)))
        weights = torch.softmax(values / max(temperature, 1e-6), dim=0)
        anchor = (weights[:, None] * self.embeddings[indices]).sum(0)
        mixed = (1.0 - strength) * flat + strength * anchor
        steered = torch.nn.functional.normalize(mixed, dim=0).reshape(query.shape)
        neighbours = tuple(
            (self.captions[i], round(float(v), 3))
            for v, i in zip(values, indices.tolist(), strict=True)
        )
        return Steered(steered.to(query.dtype).to(query.device), neighbours)


def save_concepts(
    folder: str | Path, captions: list[str], embeddings: torch.Tensor, text_encoder: str
) -> Path:
    """Write `concepts.safetensors` into a model folder (atomically: engine.paths)."""
    from safetensors.torch import save

    from engine.paths import atomic_write_bytes

    if len(captions) != len(embeddings):
        raise ValueError("one embedding per caption")
    unique: dict[str, int] = {}
    for index, text in enumerate(captions):
        unique.setdefault(text, index)
    rows = embeddings[list(unique.values())].to(torch.float16).contiguous()
    metadata = {"captions": json.dumps(list(unique)), "text_encoder": text_encoder}
    data = save({"embeddings": rows}, metadata=metadata)
    return atomic_write_bytes(Path(folder) / CONCEPTS_FILE, data)


def load_concepts(folder: str | Path) -> ConceptSet | None:
    """The folder's known concepts, None when it has none; ModelError when the file is broken."""
    from safetensors import SafetensorError, safe_open

    path = Path(folder) / CONCEPTS_FILE
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
            embeddings = handle.get_tensor("embeddings").float()
        captions = tuple(json.loads(header.get("captions", "[]")))
    except (SafetensorError, OSError, KeyError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(
            f"'{path}' (the model's known concepts) is not readable ({exc}); delete it to use "
            "the model without concept steering."
        ) from exc
    if embeddings.ndim != 2 or len(captions) != len(embeddings) or not captions:
        raise ModelError(
            f"'{path}' holds {len(captions)} captions for {len(embeddings)} embeddings; delete "
            "it to use the model without concept steering."
        )
    embeddings = torch.nn.functional.normalize(embeddings, dim=1)
    return ConceptSet(captions, embeddings, str(header.get("text_encoder", "")))


def concept_strength(config: dict, request) -> float:
    """The request's `concept_strength` (0..1), else the model's own default (0: none)."""
    value = (request.extras or {}).get(STRENGTH_EXTRA, config.get(STRENGTH_EXTRA, 0.0))
    try:
        strength = float(value)
    except (TypeError, ValueError):
        raise InputError(f"'{STRENGTH_EXTRA}' must be a number (got {value!r}).") from None
    if not 0.0 <= strength <= 1.0:
        raise InputError(
            f"'{STRENGTH_EXTRA}' must be between 0 (the prompt as typed) and 1 (only concepts "
            f"the model knows); got {strength}."
        )
    return strength


def steer_prompt(cond, concepts: ConceptSet | None, config: dict, request):
    """The prompt embedding `cond` (1, D) steered to the model's known concepts; unchanged when
    there is no prompt, the model has no concept set or the strength is 0."""
    strength = concept_strength(config, request)
    if cond is None or concepts is None or strength == 0.0:
        return cond
    k = int(config.get("concept_neighbours", DEFAULT_NEIGHBOURS))
    temperature = float(config.get("concept_temperature", DEFAULT_TEMPERATURE))
    return concepts.steer(cond, strength, k=k, temperature=temperature).embedding


def concepts_used(concepts: ConceptSet | None, config: dict, request) -> dict:
    """For a picture's metadata: the strength and the nearest known concepts of the prompt
    (nothing when the model has none, the prompt is empty or the strength is 0)."""
    prompt = request.prompt.strip()
    strength = concept_strength(config, request)
    if concepts is None or not prompt or strength == 0.0:
        return {}
    from engine.text.minilm import shared_encoder

    template = config.get("prompt_template") or "{}"
    query = shared_encoder().encode([template.format(prompt)])
    # only the concepts the steering really mixed in (one, for a model steered to its nearest)
    used = int(config.get("concept_neighbours", DEFAULT_NEIGHBOURS))
    nearest = concepts.nearest(query, max(1, min(used, REPORTED_NEIGHBOURS)))
    return {
        STRENGTH_EXTRA: strength,
        "known_concepts": "; ".join(f"{text} ({sim:.2f})" for text, sim in nearest),
        "known_concept_similarity": round(nearest[0][1], 3),
    }


def unfamiliar_prompt_notice(prompt: str, used: dict) -> str | None:
    """A line for the user when the prompt is far from everything the model was trained on, so
    a picture of something else is explained rather than a surprise."""
    if not used or used.get("known_concept_similarity", 1.0) >= FAMILIAR_SIMILARITY:
        return None
    names = [part.rsplit(" (", 1)[0] for part in used["known_concepts"].split("; ")]
    shown = prompt.strip() if len(prompt.strip()) <= 60 else prompt.strip()[:57] + "..."
    things = "thing" if len(names) == 1 else "things"
    return (
        f"This model has not learnt \u201c{shown}\u201d as such: it leaned on the nearest {things} "
        f"it knows ({', '.join(names)}). Concepts at 0 % (--concept-strength 0) draws the "
        "prompt as typed."
    )
