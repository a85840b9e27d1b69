"""The `InterrogateRequest` job: which styles and keywords fit an image, ranked with CLIP.

Like CLIP Interrogator's "flavors": the image embedding is compared with the embedding of each
candidate phrase (each style's leading phrase, e.g. "watercolor painting", and every fragment
of the keyword bank), and the closest are returned with their cosine similarity. The best style
phrase and keywords also come back joined as a prompt the user can put in the prompt box.
"""

from __future__ import annotations

from engine.api import InterrogateRequest
from engine.context import JobContext
from engine.events import Result
from engine.metrics.images import open_rgb
from engine.prompting.styles import all_keywords, load_styles, merge_fragments

TOP_STYLES = 3


def candidate_phrases() -> tuple[list[dict], list[dict]]:
    """(styles, keywords) as dicts with the phrase CLIP reads under "text"."""
    styles = [{"name": s.name, "text": s.fragments[0]} for s in load_styles() if s.fragments]
    keywords = [{"category": cat, "text": text} for cat, text in all_keywords()]
    return styles, keywords


def rank(image_embedding, text_embeddings, candidates: list[dict], top_k: int) -> list[dict]:
    """The `top_k` candidates most similar to the image, best first, each with its "score"."""
    scores = (text_embeddings @ image_embedding.reshape(-1)).tolist()
    order = sorted(range(len(candidates)), key=lambda i: scores[i], reverse=True)[:top_k]
    return [{**candidates[i], "score": float(scores[i])} for i in order]


def run_interrogate(request: InterrogateRequest, ctx: JobContext) -> Result:
    from engine.devices import prepare
    from engine.vision.clip import embed_images, embed_texts, load_clip

    image = open_rgb(request.image)
    device, _ = prepare(request.runtime)
    ctx.progress(0, 3, stage="Loading CLIP")
    styles, keywords = candidate_phrases()
    key = f"vision:clip:{request.model}:{device}"
    with ctx.cache.use(key, lambda: load_clip(request.model, device)) as clip:
        ctx.progress(1, 3, stage="Looking at the image")
        image_embedding = embed_images(clip, [image])[0]
        ctx.progress(2, 3, stage="Comparing phrases")
        style_embeddings = embed_texts(
            clip, [s["text"] for s in styles], check_cancelled=ctx.check_cancelled
        )
        keyword_embeddings = embed_texts(
            clip, [k["text"] for k in keywords], check_cancelled=ctx.check_cancelled
        )
    best_styles = rank(image_embedding, style_embeddings, styles, TOP_STYLES)
    best_keywords = rank(image_embedding, keyword_embeddings, keywords, request.top_k)
    ctx.progress(3, 3, stage="Done")
    prompt = merge_fragments(best_styles[0]["text"], *(k["text"] for k in best_keywords))
    return Result(
        ctx.job_id,
        info={"styles": best_styles, "keywords": best_keywords, "prompt": prompt},
    )
