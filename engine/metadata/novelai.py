"""NovelAI: `Software` = "NovelAI", the prompt in `Description`, the rest as JSON in `Comment`
(`scale` is the CFG scale, `uc` the negative prompt); `Source` names the model and its hash."""

from __future__ import annotations

from engine.metadata.chunks import load_json
from engine.metadata.common import ImportedSettings, build_imported, guarded, number, text

_SAMPLERS = {
    "k_euler_ancestral": "Euler a",
    "k_euler": "Euler",
    "k_lms": "LMS",
    "k_dpmpp_2m": "DPM++ 2M",
    "ddim": "DDIM",
    "plms": "PNDM",
}


def is_novelai(chunks: dict[str, str]) -> bool:
    return chunks.get("Software", "").strip().startswith("NovelAI") and "Comment" in chunks


@guarded("NovelAI")
def parse_novelai(chunks: dict[str, str]) -> ImportedSettings | None:
    """Settings from NovelAI's chunks, or None when they are not NovelAI's."""
    if not is_novelai(chunks):
        return None
    comment = load_json(chunks["Comment"], "NovelAI metadata")
    if not isinstance(comment, dict):
        return None
    sampler = text(comment.get("sampler"))
    source = chunks.get("Source", "").strip()
    model, _, model_hash = source.rpartition(" ")
    if not model:  # a single word: a name without a hash
        model, model_hash = source, ""
    extras = {"model_hash": model_hash[:64]} if model_hash else {}
    return build_imported(
        "NovelAI",
        prompt=text(comment.get("prompt")) or chunks.get("Description"),
        negative_prompt=text(comment.get("uc")),
        seed=number(comment.get("seed"), int),
        steps=number(comment.get("steps"), int),
        guidance_scale=number(comment.get("scale"), float),
        sampler=_SAMPLERS.get(sampler, sampler) if sampler else None,
        width=number(comment.get("width"), int),
        height=number(comment.get("height"), int),
        model=model or None,
        extras=extras,
    )
