"""Prompts to text-encoder embeddings, with A1111's weighting syntax and no 77-token limit.

Syntax (as in AUTOMATIC1111's web UI, which most shared prompts are written for):
`(word)` multiplies attention by 1.1, `[word]` divides it by 1.1, `(word:1.3)` sets 1.3, brackets
nest and multiply, `\\(` is a literal bracket, and `BREAK` starts a new 75-token chunk.

CLIP sees 77 tokens (start, 75 tokens, end). Longer prompts are split into 75-token chunks (at a
comma in the last 20 tokens when there is one, so phrases stay whole), each chunk is encoded on its
own and the results are concatenated along the sequence: the UNet's cross-attention takes any
length, so nothing is cut. Weights scale each token's embedding and the chunk's mean is restored
afterwards (A1111's method) so weights shift emphasis without changing the overall magnitude.

A prompt with no weights and at most 75 tokens gives exactly the embeddings diffusers computes
itself, so the engine matches a plain diffusers call bit for bit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch

ROUND_FACTOR = 1.1
CHUNK_TOKENS = 75
#: look back this many tokens for a comma to end a chunk on
COMMA_LOOKBACK = 20
_BREAK = None  # marker segment: start a new chunk

_SYNTAX = re.compile(
    r"""
      \\[()\[\]\\]                          # escaped bracket or backslash: literal
    | \(                                    # open round bracket
    | \[                                    # open square bracket
    | :\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*\)   # ':1.3)' closes a round bracket with a weight
    | \)
    | \]
    | [^\\()\[\]:]+                         # plain text
    | [:\\]                                 # a colon or backslash that is just text
    """,
    re.VERBOSE,
)
_BREAK_WORD = re.compile(r"\s*\bBREAK\b\s*")
#: A1111's extra-network tags (`<lora:name:0.8>`): they choose LoRAs, they are not words
_EXTRA_NETWORK_TAG = re.compile(r"<(?:lora|lyco|hypernet):[^>]*>")


def parse_weighted_prompt(text: str) -> list[tuple[str | None, float]]:
    """Split `text` into (fragment, weight) pairs; a `None` fragment marks a BREAK.

    Unmatched closing brackets are kept as text; brackets still open at the end apply to the
    rest of the prompt, as in A1111. LoRA tags are dropped from the text: the LoRAs themselves
    come from the request's `loras`.
    """
    text = _EXTRA_NETWORK_TAG.sub("", text)
    segments: list[list[Any]] = []
    open_round: list[int] = []
    open_square: list[int] = []
    # each closing bracket scales the segments since its opening: kept as (start, end, factor)
    # and applied in one sweep, so deeply nested prompts cost O(n), not O(n^2)
    scalings: list[tuple[int, int, float]] = []

    def scale_from(start: int, factor: float) -> None:
        scalings.append((start, len(segments), factor))

    for match in _SYNTAX.finditer(text):
        piece, weight = match.group(0), match.group(1)
        if piece.startswith("\\") and len(piece) == 2:
            segments.append([piece[1], 1.0])
        elif piece == "(":
            open_round.append(len(segments))
        elif piece == "[":
            open_square.append(len(segments))
        elif weight is not None and open_round:
            scale_from(open_round.pop(), _bounded(float(weight)))
        elif piece == ")" and open_round:
            scale_from(open_round.pop(), ROUND_FACTOR)
        elif piece == "]" and open_square:
            scale_from(open_square.pop(), 1 / ROUND_FACTOR)
        else:
            _append_text(segments, piece)
    for start in open_round:
        scale_from(start, ROUND_FACTOR)
    for start in open_square:
        scale_from(start, 1 / ROUND_FACTOR)
    _apply_scalings(segments, scalings)
    return _merge_equal_neighbours(segments)


#: a weight beyond this is a typo, not a wish; it would only saturate the embedding
MAX_WEIGHT = 100.0


def _bounded(weight: float) -> float:
    if weight != weight:  # NaN
        return 1.0
    return max(-MAX_WEIGHT, min(MAX_WEIGHT, weight))


def _apply_scalings(segments: list[list[Any]], scalings: list[tuple[int, int, float]]) -> None:
    """Multiply each segment's weight by every factor whose range holds it (a sweep over
    range starts and ends; zero factors are counted, not divided by)."""
    starts: dict[int, list[float]] = {}
    ends: dict[int, list[float]] = {}
    for start, end, factor in scalings:
        if start < end:
            starts.setdefault(start, []).append(factor)
            ends.setdefault(end, []).append(factor)
    product, zeros = 1.0, 0
    for index, segment in enumerate(segments):
        for factor in ends.get(index, ()):
            zeros, product = (zeros - 1, product) if factor == 0 else (zeros, product / factor)
        for factor in starts.get(index, ()):
            zeros, product = (zeros + 1, product) if factor == 0 else (zeros, product * factor)
        if segment[0] is not _BREAK:
            weight = 0.0 if zeros else segment[1] * product
            segment[1] = _bounded(round(weight, 12))  # undo the sweep's division rounding


def _append_text(segments: list[list[Any]], text: str) -> None:
    for index, part in enumerate(_BREAK_WORD.split(text)):
        if index:
            segments.append([_BREAK, 1.0])
        if part:
            segments.append([part, 1.0])


def _merge_equal_neighbours(segments: list[list[Any]]) -> list[tuple[str | None, float]]:
    merged: list[list[Any]] = []
    for text, weight in segments:
        if (
            merged
            and text is not _BREAK
            and merged[-1][0] is not _BREAK
            and (merged[-1][1] == weight)
        ):
            merged[-1][0] += text
        else:
            merged.append([text, weight])
    return [(text, weight) for text, weight in merged]


@dataclass
class TokenChunk:
    """One CLIP window: up to 75 token ids with their weights (no start/end tokens)."""

    ids: list[int]
    weights: list[float]


def tokenize_weighted(text: str, tokenizer: Any) -> list[TokenChunk]:
    """Token chunks of at most 75 tokens for `text` (at least one chunk, maybe empty)."""
    comma_id = _comma_id(tokenizer)
    chunks: list[TokenChunk] = []
    current = TokenChunk([], [])
    for fragment, weight in parse_weighted_prompt(text):
        if fragment is _BREAK:
            chunks.append(current)
            current = TokenChunk([], [])
            continue
        ids = tokenizer(fragment, add_special_tokens=False, verbose=False).input_ids
        for token_id in ids:
            if len(current.ids) == CHUNK_TOKENS:
                current, carry = _split_at_comma(current, comma_id)
                chunks.append(current)
                current = carry
            current.ids.append(token_id)
            current.weights.append(weight)
    chunks.append(current)
    return chunks


def _comma_id(tokenizer: Any) -> int | None:
    ids = tokenizer(",", add_special_tokens=False, verbose=False).input_ids
    return ids[0] if len(ids) == 1 else None


def _split_at_comma(chunk: TokenChunk, comma_id: int | None) -> tuple[TokenChunk, TokenChunk]:
    """End a full chunk after its last comma in the final 20 tokens; the rest carries over."""
    if comma_id is not None:
        for index in range(len(chunk.ids) - 1, len(chunk.ids) - 1 - COMMA_LOOKBACK, -1):
            if chunk.ids[index] == comma_id:
                cut = index + 1
                if cut < len(chunk.ids):
                    return (
                        TokenChunk(chunk.ids[:cut], chunk.weights[:cut]),
                        TokenChunk(chunk.ids[cut:], chunk.weights[cut:]),
                    )
                break
    return chunk, TokenChunk([], [])


def chunk_input_ids(chunk: TokenChunk, tokenizer: Any) -> tuple[list[int], list[float], int]:
    """[start] + ids + [end] padded to 77 with the tokenizer's pad token, weights, real length."""
    ids = [tokenizer.bos_token_id, *chunk.ids, tokenizer.eos_token_id]
    weights = [1.0, *chunk.weights, 1.0]
    real_length = len(ids)
    padding = CHUNK_TOKENS + 2 - real_length
    return ids + [tokenizer.pad_token_id] * padding, weights + [1.0] * padding, real_length


@dataclass
class PromptEmbeds:
    """What the pipelines take instead of prompt strings."""

    prompt_embeds: torch.Tensor
    negative_prompt_embeds: torch.Tensor
    pooled_prompt_embeds: torch.Tensor | None = None
    negative_pooled_prompt_embeds: torch.Tensor | None = None
    chunks: int = 1

    def as_kwargs(self) -> dict[str, torch.Tensor]:
        names = (
            "prompt_embeds",
            "negative_prompt_embeds",
            "pooled_prompt_embeds",
            "negative_pooled_prompt_embeds",
        )
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}


@torch.no_grad()
def encode_prompts(pipe: Any, prompt: str, negative: str, *, clip_skip: int = 0) -> PromptEmbeds:
    """Embeddings for `prompt` and `negative` with the pipeline's text encoder(s).

    `clip_skip` follows A1111: 0 or 1 uses the last layer, n >= 2 skips n - 1 final layers.
    """
    if getattr(pipe, "text_encoder_2", None) is not None:
        return _encode_sdxl(pipe, prompt, negative, clip_skip=clip_skip)
    return _encode_sd(pipe, prompt, negative, clip_skip=clip_skip)


def _encode_sd(pipe: Any, prompt: str, negative: str, *, clip_skip: int) -> PromptEmbeds:
    positive, negative_chunks = _paired_chunks(pipe.tokenizer, prompt, negative)
    encode = _sd_chunk_encoder(pipe.text_encoder, pipe._execution_device, clip_skip)
    pos = torch.cat([encode(c, pipe.tokenizer) for c in positive], dim=1)
    neg = torch.cat([encode(c, pipe.tokenizer) for c in negative_chunks], dim=1)
    return PromptEmbeds(pos, neg, chunks=len(positive))


def _sd_chunk_encoder(text_encoder: Any, device: torch.device, clip_skip: int):
    use_mask = bool(getattr(text_encoder.config, "use_attention_mask", False))

    def encode(chunk: TokenChunk, tokenizer: Any) -> torch.Tensor:
        ids, weights, real_length = chunk_input_ids(chunk, tokenizer)
        input_ids = torch.tensor([ids], device=device)
        mask = _attention_mask(real_length, device) if use_mask else None
        if clip_skip <= 1:
            hidden = text_encoder(input_ids, attention_mask=mask)[0]
        else:
            out = text_encoder(input_ids, attention_mask=mask, output_hidden_states=True)
            hidden = _final_layer_norm(text_encoder)(out.hidden_states[-clip_skip])
        return apply_weights(hidden, weights)

    return encode


def _final_layer_norm(text_encoder: Any):
    # transformers 5 holds the norm on CLIPTextModel itself; 4.x on its inner `text_model`
    return getattr(text_encoder, "text_model", text_encoder).final_layer_norm


def _encode_sdxl(pipe: Any, prompt: str, negative: str, *, clip_skip: int) -> PromptEmbeds:
    device = pipe._execution_device
    # SDXL uses the penultimate layer of both encoders; clip skip moves further back from there
    layer = -(max(clip_skip, 1) + 1)
    pairs = [(pipe.tokenizer, pipe.text_encoder), (pipe.tokenizer_2, pipe.text_encoder_2)]
    pairs = [(tok, enc) for tok, enc in pairs if tok is not None and enc is not None]
    zero_negative = not negative.strip() and bool(
        getattr(pipe.config, "force_zeros_for_empty_prompt", False)
    )
    per_encoder_pos, per_encoder_neg, pooled = [], [], []
    for tokenizer, encoder in pairs:
        positive, negative_chunks = _paired_chunks(tokenizer, prompt, negative)
        pos, pos_pooled = _sdxl_encode_chunks(encoder, tokenizer, positive, device, layer)
        neg, neg_pooled = _sdxl_encode_chunks(encoder, tokenizer, negative_chunks, device, layer)
        per_encoder_pos.append(pos)
        per_encoder_neg.append(neg)
        pooled.append((pos_pooled, neg_pooled))
    prompt_embeds = torch.cat(per_encoder_pos, dim=-1)
    negative_embeds = torch.cat(per_encoder_neg, dim=-1)
    # the pooled embedding comes from the projection encoder (the last one), first chunk
    pos_pooled, neg_pooled = pooled[-1]
    if zero_negative:
        negative_embeds = torch.zeros_like(prompt_embeds)
        neg_pooled = torch.zeros_like(pos_pooled)
    return PromptEmbeds(
        prompt_embeds, negative_embeds, pos_pooled, neg_pooled, chunks=prompt_embeds.shape[1] // 77
    )


def _sdxl_encode_chunks(encoder, tokenizer, chunks, device, layer):
    hidden_chunks, pooled = [], None
    for chunk in chunks:
        ids, weights, _ = chunk_input_ids(chunk, tokenizer)
        out = encoder(torch.tensor([ids], device=device), output_hidden_states=True)
        if pooled is None and out[0].ndim == 2:
            pooled = out[0]
        hidden_chunks.append(apply_weights(out.hidden_states[layer], weights))
    return torch.cat(hidden_chunks, dim=1), pooled


def _paired_chunks(tokenizer, prompt: str, negative: str):
    """Chunks for both prompts, the shorter padded with empty chunks to the same count."""
    positive = tokenize_weighted(prompt, tokenizer)
    negative_chunks = tokenize_weighted(negative, tokenizer)
    while len(positive) < len(negative_chunks):
        positive.append(TokenChunk([], []))
    while len(negative_chunks) < len(positive):
        negative_chunks.append(TokenChunk([], []))
    return positive, negative_chunks


def _attention_mask(real_length: int, device: torch.device) -> torch.Tensor:
    mask = torch.zeros(1, CHUNK_TOKENS + 2, dtype=torch.long, device=device)
    mask[0, :real_length] = 1
    return mask


def apply_weights(hidden: torch.Tensor, weights: list[float]) -> torch.Tensor:
    """Scale each token's embedding by its weight, then restore the original mean (A1111)."""
    if all(w == 1.0 for w in weights):
        return hidden  # untouched: identical to diffusers' own encoding
    scale = torch.tensor(weights, dtype=hidden.dtype, device=hidden.device)
    original_mean = hidden.float().mean()
    weighted = hidden * scale.view(1, -1, 1)
    weighted_mean = weighted.float().mean()
    if weighted_mean.abs() < 1e-6 or original_mean.abs() < 1e-6:
        return weighted  # a (near) zero mean carries no magnitude to restore; avoid 0/0
    return weighted * (original_mean / weighted_mean).to(hidden.dtype)
