"""The `ExpandPromptRequest` job: grow a short prompt into a richer one.

Two ways, picked by whether the request names a model folder:
- a causal language model (transformers `AutoModelForCausalLM`: GPT-2, a prompt-expansion
  GPT-2 such as MagicPrompt, or a small instruction model) continues the prompt. Sampling is
  our own short loop (nucleus sampling, Holtzman et al. 2019) with a private `torch.Generator`,
  so the same seed always gives the same expansion without touching global random state, the
  cancel token is checked before every token, and the length is bounded twice (tokens, then
  characters);
- with no model, retrieval: the prompt is embedded with all-MiniLM-L6-v2 (bundled offline) and
  the closest style preset and keyword fragments (lighting, composition, mood, colour, detail)
  are added, chosen among the closest few with the seed so "expand again" can vary.
"""

from __future__ import annotations

import math
import random

from engine.api import ExpandPromptRequest
from engine.context import JobContext
from engine.events import Result
from engine.prompting.styles import (
    Style,
    apply_style,
    load_keywords,
    load_styles,
    merge_fragments,
    printable_text,
)

#: an expanded prompt never grows past this (CLIP reads 77 tokens, about 300 characters)
MAX_PROMPT_CHARS = 400
#: keyword categories the retrieval adds (medium and setting would fight the style/subject)
RETRIEVAL_CATEGORIES = ("lighting", "composition", "mood", "color", "detail")
#: each category's keyword is drawn among this many closest, weighted by similarity
RETRIEVAL_CANDIDATES = 3
RETRIEVAL_TEMPERATURE = 0.05


def run_expand(request: ExpandPromptRequest, ctx: JobContext) -> Result:
    if request.model.strip():
        info = expand_with_language_model(request, ctx)
    else:
        info = expand_by_retrieval(request, ctx)
    info["prompt"] = clip_length(info["prompt"])
    return Result(ctx.job_id, info=info)


def clip_length(prompt: str, limit: int = MAX_PROMPT_CHARS) -> str:
    """At most `limit` characters, cut at a fragment (comma) or word boundary."""
    prompt = " ".join(prompt.split()).strip(" ,")
    if len(prompt) <= limit:
        return prompt
    cut = prompt[:limit]
    boundary = cut.rfind(",")
    if boundary < limit // 2:
        boundary = cut.rfind(" ")
    return cut[: boundary if boundary > 0 else limit].strip(" ,")


# -- retrieval with MiniLM ----------------------------------------------------------------------
def expand_by_retrieval(request: ExpandPromptRequest, ctx: JobContext) -> dict:
    from engine.text.minilm import shared_encoder

    ctx.progress(0, 2, stage="Loading the text encoder")
    encoder = shared_encoder()
    ctx.check_cancelled()
    ctx.progress(1, 2, stage="Finding styles and keywords")
    styles = load_styles()
    query = encoder.encode([request.prompt.strip()])
    style_scores = (query @ encoder.encode([s.description for s in styles]).T)[0]
    style = styles[int(style_scores.argmax())]
    rng = random.Random(request.seed)
    keywords = []
    prompt_lower = request.prompt.lower()
    bank = load_keywords()
    for category in RETRIEVAL_CATEGORIES:
        options = [k for k in bank.get(category, ()) if k.lower() not in prompt_lower]
        if not options:
            continue
        ctx.check_cancelled()
        scores = (query @ encoder.encode(options).T)[0].tolist()
        keywords.append(_draw_close(options, scores, rng))
    prompt, negative = apply_style(style, merge_fragments(request.prompt, *keywords))
    ctx.progress(2, 2, stage="Done")
    return {
        "prompt": prompt,
        "negative_prompt": negative,
        "method": "retrieval",
        "style": style.name,
        "style_similarity": float(style_scores.max()),
        "keywords": keywords,
    }


def _draw_close(options: list[str], scores: list[float], rng: random.Random) -> str:
    ranked = sorted(zip(scores, options, strict=True), reverse=True)[:RETRIEVAL_CANDIDATES]
    top = ranked[0][0]
    weights = [math.exp((score - top) / RETRIEVAL_TEMPERATURE) for score, _ in ranked]
    return rng.choices([text for _, text in ranked], weights=weights)[0]


def closest_style(prompt: str) -> Style:
    """The style preset whose description is closest to `prompt` (MiniLM cosine)."""
    from engine.text.minilm import shared_encoder

    encoder = shared_encoder()
    styles = load_styles()
    scores = encoder.encode([prompt]) @ encoder.encode([s.description for s in styles]).T
    return styles[int(scores[0].argmax())]


# -- a causal language model -------------------------------------------------------------------
def expand_with_language_model(request: ExpandPromptRequest, ctx: JobContext) -> dict:
    from engine.devices import prepare
    from engine.prompting.sampling import load_causal_lm, sample_continuation

    device, _ = prepare(request.runtime)
    ctx.progress(0, request.max_new_tokens, stage="Loading the language model")
    key = f"prompting:causal-lm:{request.model}:{device}"
    with ctx.cache.use(key, lambda: load_causal_lm(request.model, device)) as bundle:
        ctx.check_cancelled()
        continuation = sample_continuation(
            bundle.model,
            bundle.processors["tokenizer"],
            request.prompt.strip(),
            seed=request.seed,
            max_new_tokens=request.max_new_tokens,
            temperature=request.temperature,
            top_p=request.top_p,
            check_cancelled=ctx.check_cancelled,
            on_token=lambda n: ctx.progress(n, request.max_new_tokens, stage="Writing"),
        )
    prompt = join_continuation(request.prompt, continuation)
    return {
        "prompt": prompt,
        "negative_prompt": "",
        "method": "language model",
        "continuation": continuation,
    }


def join_continuation(prompt: str, continuation: str) -> str:
    """The prompt followed by what the model wrote on the same line, fragments kept once."""
    first_line = continuation.split("\n", 1)[0]
    return merge_fragments(prompt.strip() + printable_text(first_line))
