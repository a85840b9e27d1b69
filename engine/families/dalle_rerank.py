"""Re-ranking for the DALL-E family: make N candidates, keep the k that best match the prompt.

DALL-E (Ramesh et al. 2021, section 2.5) drew 512 samples and kept the best by CLIP's image-text
similarity (Radford et al. 2021). Easel does the same when a CLIP model folder is given
(`extras["clip_model"]`, a transformers CLIPModel saved locally; engine.vision.clip). Without
one, the model's own gallery stands in: at training time the trainer stores the FID Inception
features (engine.metrics.fid, an offline asset) of some training pictures and the MiniLM
embeddings of their captions; a candidate's score is the MiniLM similarity between the prompt
and the captions of its nearest gallery pictures in Inception space ("does it look like
something whose name is close to the prompt?").

`extras["candidates"]` (or the model's `candidates` setting) is N; the request's batch size is k.
Image i of the result keeps the seed it was made with (`info["easel_seed"]`) so its metadata
names the seed that reproduces it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from engine.errors import InputError

MAX_CANDIDATES = 256
#: gallery neighbours whose caption similarity is averaged (one alone gives many ties)
NEIGHBOURS = 3

Scorer = Callable[[Sequence, str], torch.Tensor]  # (pictures, prompt) -> one score per picture


def candidate_count(config: dict, request) -> int:
    """How many pictures to make: the batch size, or more when re-ranking is asked for."""
    from engine.families.common import int_extra

    default = int(config.get("candidates", 1) or 1)
    wanted = int_extra(request.extras, "candidates", default, low=1, high=MAX_CANDIDATES)
    return max(request.batch_size, wanted or 1)


def keep_best(pictures: Sequence, scores: torch.Tensor, keep: int) -> list[int]:
    """Indices of the `keep` highest scores, best first (ties: the earlier picture first)."""
    order = sorted(range(len(pictures)), key=lambda i: (-float(scores[i]), i))
    return order[:keep]


def rerank(pictures: list, request, config: dict, ctx, gallery=None, scorer=None) -> list:
    """The request's batch size of `pictures` (made from seed, seed + 1, ...), best first."""
    from engine.families.common import image_seeds

    if not request.prompt.strip():
        raise InputError("Re-ranking compares pictures with the prompt: write a prompt first.")
    scorer = scorer or choose_scorer(config, request, gallery)
    ctx.progress(0, 1, stage="re-ranking candidates")
    scores = scorer(pictures, request.prompt.strip())
    seeds = image_seeds(request.seed, len(pictures))
    kept = keep_best(pictures, scores, request.batch_size)
    ctx.notice(
        f"Kept the best {len(kept)} of {len(pictures)} candidates by image-text similarity "
        f"({getattr(scorer, 'label', 'scorer')})."
    )
    result = []
    for index in kept:
        picture = pictures[index]
        picture.info["easel_seed"] = seeds[index]
        picture.info["easel_rerank_score"] = round(float(scores[index]), 4)
        result.append(picture)
    return result


def choose_scorer(config: dict, request, gallery=None) -> Scorer:
    """CLIP when a folder is given, else the model's gallery (features, caption embeddings)."""
    clip_folder = request.extras.get("clip_model") or config.get("clip_model")
    if clip_folder:
        return ClipScorer(str(clip_folder))
    if gallery is None or not len(gallery[0]):
        raise InputError(
            "This model has no re-ranking gallery (trained with rerank_gallery=0) and no CLIP "
            "model was given: set extras clip_model to a local CLIP folder, or use 1 candidate."
        )
    return GalleryScorer(*gallery)


class ClipScorer:
    """Cosine similarity of CLIP image and text embeddings."""

    label = "CLIP"

    def __init__(self, folder: str):
        from engine.vision.clip import load_clip

        self.bundle = load_clip(folder)

    def __call__(self, pictures, prompt: str) -> torch.Tensor:
        from engine.vision.clip import embed_images, embed_texts

        images = embed_images(self.bundle, list(pictures))
        text = embed_texts(self.bundle, [prompt])
        return (images @ text.T).flatten()


class GalleryScorer:
    """MiniLM similarity of the prompt to the captions of each picture's nearest gallery
    pictures in Inception feature space. `features` (G, F) and `caption_embeddings` (G, 384);
    `embed_pictures` and `embed_text` default to the FID Inception network and MiniLM."""

    label = "captions of the nearest training pictures"

    def __init__(
        self,
        features: torch.Tensor,
        caption_embeddings: torch.Tensor,
        embed_pictures: Callable[[Sequence], torch.Tensor] | None = None,
        embed_text: Callable[[str], torch.Tensor] | None = None,
    ):
        self.features = features.float()
        self.captions = torch.nn.functional.normalize(caption_embeddings.float(), dim=-1)
        self.embed_pictures = embed_pictures or inception_features
        self.embed_text = embed_text or minilm_embedding

    def __call__(self, pictures, prompt: str) -> torch.Tensor:
        feats = self.embed_pictures(pictures).float()
        distances = torch.cdist(feats, self.features)
        count = min(NEIGHBOURS, len(self.features))
        nearest = distances.topk(count, dim=1, largest=False).indices  # (N, count)
        text = torch.nn.functional.normalize(self.embed_text(prompt).float().flatten(), dim=0)
        similarity = self.captions @ text  # (G,)
        return similarity[nearest].mean(1)


def inception_features(pictures) -> torch.Tensor:
    from engine.metrics.fid import _run_network, load_inception, to_network_input

    net = load_inception()
    batch = torch.stack([to_network_input(p.convert("RGB")) for p in pictures])
    return torch.from_numpy(_run_network(net, batch, "cpu"))


def minilm_embedding(prompt: str) -> torch.Tensor:
    from engine.text.minilm import shared_encoder

    return shared_encoder().encode([prompt])[0]
