"""The `ClipScoreRequest` job: how well images agree with a prompt, with a CLIP model folder.

CLIPScore (Hessel et al. 2021, "CLIPScore: A Reference-free Evaluation Metric for Image
Captioning") as torchmetrics reports it: 100 * max(cos(image, text), 0) per image, averaged.
Higher is better; ~30+ is typical agreement for a real CLIP ViT-B model, and values are only
comparable between runs with the same CLIP model.
"""

from __future__ import annotations

import torch

from engine.api import ClipScoreRequest
from engine.context import JobContext
from engine.events import Result
from engine.metrics.images import list_images, open_rgb

BATCH_SIZE = 16


def clip_scores(image_embeddings, text_embedding) -> list[float]:
    """100 * max(cosine, 0) for each unit image embedding against one unit text embedding."""
    cosine = image_embeddings @ text_embedding.reshape(-1)
    return [100.0 * max(float(c), 0.0) for c in cosine]


def run_clip_score(request: ClipScoreRequest, ctx: JobContext) -> Result:
    from engine.devices import prepare
    from engine.vision.clip import embed_images, embed_texts, load_clip

    paths = list_images(request.images, what="The image set")
    device, _ = prepare(request.runtime)
    total = len(paths)
    ctx.progress(0, total, stage="Loading CLIP")
    with ctx.cache.use(
        f"vision:clip:{request.model}:{device}", lambda: load_clip(request.model, device)
    ) as clip:
        text = embed_texts(clip, [request.prompt.strip()])
        chunks = []
        for start in range(0, total, BATCH_SIZE):
            # decode one batch at a time: a folder of thousands of images never sits in memory
            batch = [open_rgb(path) for path in paths[start : start + BATCH_SIZE]]
            chunks.append(embed_images(clip, batch, check_cancelled=ctx.check_cancelled))
            ctx.progress(start + len(batch), total, stage="Scoring")
        embeddings = torch.cat(chunks)
    scores = clip_scores(embeddings, text)
    return Result(
        ctx.job_id,
        info={
            "clip_score": sum(scores) / len(scores),
            "scores": scores,
            "images": [str(p) for p in paths],
            "prompt": request.prompt,
        },
    )
