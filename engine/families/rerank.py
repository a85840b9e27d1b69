"""Re-ranking for the text-to-image families (dalle, ldm): make N candidates, keep the k that
best match the prompt.

DALL-E (Ramesh et al. 2021, section 2.5) drew 512 samples and kept the best by CLIP's image-text
similarity (Radford et al. 2021). Easel does the same when a CLIP model folder is given
(`extras["clip_model"]`, a transformers CLIPModel saved locally; engine.vision.clip). Without
one, the model's own gallery stands in: the FID Inception features (engine.metrics.fid, an
offline asset) of some training pictures and the MiniLM embeddings of their captions, stored by
the DALL-E trainer in the weights or beside any model's weights in `rerank-gallery.safetensors`
(save_gallery); a candidate's score is the MiniLM similarity between the prompt and the
captions of its nearest gallery pictures in Inception space ("does it look like
something whose name is close to the prompt?").

`extras["candidates"]` (or the model's `candidates` setting) is N; the request's batch size is k.
Image i of the result keeps the seed it was made with (`info["easel_seed"]`) so its metadata
names the seed that reproduces it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from engine.errors import InputError, ModelError

MAX_CANDIDATES = 256
GALLERY_FILE = "rerank-gallery.safetensors"
#: the attribute of a loaded native model holding the gallery read from GALLERY_FILE (or None)
GALLERY_ATTRIBUTE = "rerank_gallery"
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


def model_gallery(model: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The loaded model's gallery: the folder's GALLERY_FILE, else one stored in the weights
    (the DALL-E family's buffers), else None."""
    beside = getattr(model, GALLERY_ATTRIBUTE, None)
    if beside is not None:
        return beside
    features = getattr(model, "gallery_features", None)
    if isinstance(features, torch.Tensor) and len(features):
        return features, model.gallery_captions
    return None


def save_gallery(
    folder: str | Path, features: torch.Tensor, caption_embeddings: torch.Tensor, source: str
) -> Path:
    """Write GALLERY_FILE into a model folder (atomically: engine.paths.atomic_write_bytes)."""
    from safetensors.torch import save

    from engine.paths import atomic_write_bytes

    if len(features) != len(caption_embeddings) or not len(features):
        raise ValueError("one caption embedding per picture, at least one picture")
    tensors = {
        "features": features.to(torch.float16).contiguous(),
        "captions": caption_embeddings.to(torch.float16).contiguous(),
    }
    data = save(tensors, metadata={"source": json.dumps(source)})
    return atomic_write_bytes(Path(folder) / GALLERY_FILE, data)


def load_gallery(folder: str | Path) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The folder's gallery (features, caption embeddings), None when it has none; ModelError
    when the file is broken."""
    from safetensors import SafetensorError, safe_open

    path = Path(folder) / GALLERY_FILE
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as handle:
            features = handle.get_tensor("features").float()
            captions = handle.get_tensor("captions").float()
    except (SafetensorError, OSError, KeyError) as exc:
        raise ModelError(
            f"'{path}' (the model's re-ranking gallery) is not readable ({exc}); delete it to "
            "use the model without re-ranking."
        ) from exc
    if features.ndim != 2 or captions.ndim != 2 or len(features) != len(captions):
        raise ModelError(
            f"'{path}' holds {len(features)} pictures for {len(captions)} captions; delete it "
            "to use the model without re-ranking."
        )
    return features, captions


def choose_scorer(config: dict, request, gallery=None) -> Scorer:
    """CLIP when a folder is given, else the model's gallery (features, caption embeddings)."""
    clip_folder = request.extras.get("clip_model") or config.get("clip_model")
    if clip_folder:
        return ClipScorer(str(clip_folder))
    if gallery is None or not len(gallery[0]):
        raise InputError(
            "This model has no re-ranking gallery (a DALL-E model trained with rerank_gallery=0, "
            f"or a folder without {GALLERY_FILE}) and no CLIP model was given: set extras "
            "clip_model to a local CLIP folder, or use 1 candidate."
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
