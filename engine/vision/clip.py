"""A user-supplied CLIP model folder (transformers `CLIPModel`): load it, embed images and texts.

Used by CLIP score (metrics) and interrogation (vision). Embeddings are computed through the
vision/text towers and their projections directly (`visual_projection(vision_model(...)
.pooler_output)`), which is what `get_image_features` does in every transformers version, while
its return type changed between 4.x and 5.x. A folder without tokenizer files gets Easel's
bundled CLIP tokenizer (the same BPE vocabulary every OpenAI CLIP uses); one without an image
processor config gets CLIP's standard preprocessing at the model's own image size.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from engine.errors import ModelError
from engine.paths import resource
from engine.vision.folders import (
    ModelBundle,
    load_pretrained,
    read_model_config,
    require_model_type,
)

log = logging.getLogger(__name__)

WHAT = "CLIP"
EXAMPLES = "e.g. openai/clip-vit-base-patch32 saved with save_pretrained"
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "tokenizer_config.json")
PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")


def load_clip(folder: str | Path, device: torch.device | str = "cpu") -> ModelBundle:
    """Model, tokenizer and image processor from a local CLIP folder, in eval mode."""
    from transformers import CLIPModel

    path, config = read_model_config(folder, what=WHAT)
    require_model_type(config, {"clip"}, folder=path, what=WHAT, examples=EXAMPLES)
    model = load_pretrained(CLIPModel.from_pretrained, path, what=WHAT).eval().to(device)
    tokenizer = _load_tokenizer(path, model)
    processor = _load_image_processor(path, model)
    return ModelBundle(model, {"tokenizer": tokenizer, "image": processor}, kind="clip")


def _load_tokenizer(path: Path, model):
    from transformers import AutoTokenizer, CLIPTokenizer

    if any((path / name).is_file() for name in TOKENIZER_FILES):
        tokenizer = load_pretrained(AutoTokenizer.from_pretrained, path, what="CLIP tokenizer")
    else:
        log.info("no tokenizer in %s: using the bundled CLIP tokenizer", path)
        tokenizer = CLIPTokenizer.from_pretrained(str(resource("tokenizers", "clip")))
    vocab = model.config.text_config.vocab_size
    if len(tokenizer) > vocab:
        raise ModelError(
            f"The tokenizer in '{path}' has {len(tokenizer)} tokens but the CLIP text model only "
            f"{vocab}: the folder mixes parts of different models."
        )
    return tokenizer


def _load_image_processor(path: Path, model):
    from transformers import AutoImageProcessor, CLIPImageProcessor

    if any((path / name).is_file() for name in PROCESSOR_FILES):
        return load_pretrained(AutoImageProcessor.from_pretrained, path, what="CLIP processor")
    size = model.config.vision_config.image_size
    return CLIPImageProcessor(size={"shortest_edge": size}, crop_size=size)


def _device(model) -> torch.device:
    return next(model.parameters()).device


@torch.inference_mode()
def embed_images(
    bundle: ModelBundle,
    images: Sequence,
    *,
    batch_size: int = 16,
    check_cancelled: Callable[[], None] = lambda: None,
    on_batch: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """Unit-length image embeddings (N, D) for PIL images."""
    model, processor = bundle.model, bundle.processors["image"]
    rows = []
    for start in range(0, len(images), batch_size):
        check_cancelled()
        chunk = list(images[start : start + batch_size])
        pixels = processor(images=chunk, return_tensors="pt")["pixel_values"]
        pooled = model.vision_model(pixel_values=pixels.to(_device(model))).pooler_output
        rows.append(model.visual_projection(pooled).float().cpu())
        if on_batch is not None:
            on_batch(start + len(chunk))
    return torch.nn.functional.normalize(torch.cat(rows), dim=-1)


@torch.inference_mode()
def embed_texts(
    bundle: ModelBundle,
    texts: Sequence[str],
    *,
    batch_size: int = 64,
    check_cancelled: Callable[[], None] = lambda: None,
) -> torch.Tensor:
    """Unit-length text embeddings (N, D); texts longer than the model reads are truncated."""
    model, tokenizer = bundle.model, bundle.processors["tokenizer"]
    limit = model.config.text_config.max_position_embeddings
    rows = []
    for start in range(0, len(texts), batch_size):
        check_cancelled()
        batch = tokenizer(
            list(texts[start : start + batch_size]),
            padding=True,
            truncation=True,
            max_length=limit,
            return_tensors="pt",
        )
        batch = {k: v.to(_device(model)) for k, v in batch.items() if k != "token_type_ids"}
        pooled = model.text_model(**batch).pooler_output
        rows.append(model.text_projection(pooled).float().cpu())
    return torch.nn.functional.normalize(torch.cat(rows), dim=-1)
