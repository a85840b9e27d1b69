"""A1111 prompt weighting, long prompts, and parity with diffusers' own prompt encoding."""

from __future__ import annotations

import pytest
import torch

from engine.sd.prompts import (
    CHUNK_TOKENS,
    apply_weights,
    encode_prompts,
    parse_weighted_prompt,
    tokenize_weighted,
)


def close(a, b):
    return abs(a - b) < 1e-9


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a cat", [("a cat", 1.0)]),
        ("a (cat)", [("a ", 1.0), ("cat", 1.1)]),
        ("a ((cat))", [("a ", 1.0), ("cat", 1.1 * 1.1)]),
        ("a [cat]", [("a ", 1.0), ("cat", 1 / 1.1)]),
        ("a (cat:1.5) b", [("a ", 1.0), ("cat", 1.5), (" b", 1.0)]),
        ("(a (cat:2)):0.5", [("a ", 1.1), ("cat", 2.2), (":0.5", 1.0)]),
        (r"\(literal\)", [("(literal)", 1.0)]),
        ("ratio 16:9", [("ratio 16:9", 1.0)]),
        ("unclosed (cat", [("unclosed ", 1.0), ("cat", 1.1)]),
        ("stray ) bracket", [("stray ) bracket", 1.0)]),
        ("a BREAK b", [("a", 1.0), (None, 1.0), ("b", 1.0)]),
        ("", []),
    ],
)
def test_a1111_weighting_syntax(text, expected):
    parsed = parse_weighted_prompt(text)
    assert [t for t, _ in parsed] == [t for t, _ in expected]
    assert all(close(w, e) for (_, w), (_, e) in zip(parsed, expected, strict=True))


@pytest.fixture(scope="module")
def sd1_pipe(tiny_models):
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline.from_pretrained(str(tiny_models["sd1"]), local_files_only=True)


@pytest.fixture(scope="module")
def sdxl_pipe(tiny_models):
    from diffusers import StableDiffusionXLPipeline

    return StableDiffusionXLPipeline.from_pretrained(
        str(tiny_models["sdxl"]), local_files_only=True
    )


def test_tokens_carry_their_weights(sd1_pipe):
    (chunk,) = tokenize_weighted("a photo of a (cat:1.3)", sd1_pipe.tokenizer)
    assert chunk.ids == [320, 1125, 539, 320, 2368]  # the real CLIP vocabulary
    assert chunk.weights == [1.0, 1.0, 1.0, 1.0, 1.3]


def test_long_prompt_is_chunked_not_cut(sd1_pipe):
    words = ", ".join(f"word{i}" for i in range(60))  # well over 75 tokens
    chunks = tokenize_weighted(words, sd1_pipe.tokenizer)
    all_ids = sd1_pipe.tokenizer(words, add_special_tokens=False).input_ids
    assert len(chunks) >= 2
    assert all(len(c.ids) <= CHUNK_TOKENS for c in chunks)
    assert [i for c in chunks for i in c.ids] == all_ids  # every token kept, in order
    comma = sd1_pipe.tokenizer(",", add_special_tokens=False).input_ids[0]
    assert chunks[0].ids[-1] == comma  # chunks end on a phrase boundary
    embeds = encode_prompts(sd1_pipe, words, "")
    assert embeds.prompt_embeds.shape[1] == 77 * len(chunks)
    assert embeds.negative_prompt_embeds.shape == embeds.prompt_embeds.shape
    # the tail of the prompt changes the embeddings (it was not truncated away)
    shorter = encode_prompts(sd1_pipe, words.rsplit(",", 3)[0], "")
    assert not torch.equal(shorter.prompt_embeds, embeds.prompt_embeds)


def test_break_starts_a_new_chunk(sd1_pipe):
    chunks = tokenize_weighted("a cat BREAK a dog", sd1_pipe.tokenizer)
    assert len(chunks) == 2
    assert encode_prompts(sd1_pipe, "a cat BREAK a dog", "").prompt_embeds.shape[1] == 154


def test_unweighted_prompt_matches_diffusers_exactly(sd1_pipe, sdxl_pipe):
    ours = encode_prompts(sd1_pipe, "a photo of a cat", "blurry")
    pos, neg = sd1_pipe.encode_prompt("a photo of a cat", "cpu", 1, True, "blurry")
    assert torch.equal(ours.prompt_embeds, pos) and torch.equal(ours.negative_prompt_embeds, neg)
    ours = encode_prompts(sdxl_pipe, "a photo of a cat", "")
    pos, neg, pooled, neg_pooled = sdxl_pipe.encode_prompt("a photo of a cat", device="cpu")
    assert torch.equal(ours.prompt_embeds, pos)
    assert torch.equal(ours.pooled_prompt_embeds, pooled)
    assert torch.equal(ours.negative_prompt_embeds, neg)  # zeros: empty negative on SDXL
    assert torch.equal(ours.negative_pooled_prompt_embeds, neg_pooled)


def test_clip_skip_uses_an_earlier_layer_through_the_final_norm(sd1_pipe):
    # A1111's "Clip skip: 2" = the penultimate layer, then the final layer norm (as diffusers'
    # clip_skip=1, whose own code path does not run with transformers 5)
    ours = encode_prompts(sd1_pipe, "a cat", "", clip_skip=2).prompt_embeds
    ids = sd1_pipe.tokenizer(
        "a cat", padding="max_length", max_length=77, return_tensors="pt"
    ).input_ids
    encoder = sd1_pipe.text_encoder
    with torch.no_grad():
        hidden = encoder(ids, output_hidden_states=True).hidden_states[-2]
        norm = getattr(encoder, "text_model", encoder).final_layer_norm
        assert torch.equal(ours, norm(hidden))
        assert not torch.equal(ours, encoder(ids)[0])


def test_weight_scales_only_its_tokens_then_restores_the_mean(sd1_pipe):
    plain = encode_prompts(sd1_pipe, "a photo of a cat", "").prompt_embeds
    weighted = encode_prompts(sd1_pipe, "a photo of a (cat:1.5)", "").prompt_embeds
    # same tokens, so the raw encoder output is the same; token 5 ("cat") is scaled 1.5x
    weights = [1.0] * 77
    weights[5] = 1.5
    assert torch.allclose(weighted, apply_weights(plain, weights))
    ratio = weighted[0, 5] / plain[0, 5]
    others = weighted[0, 1] / plain[0, 1]
    assert torch.allclose(ratio / others, torch.tensor(1.5), atol=1e-4)
    assert torch.allclose(weighted.mean(), plain.mean(), atol=1e-6)
    lowered = encode_prompts(sd1_pipe, "a photo of a [cat]", "").prompt_embeds
    assert torch.allclose(
        (lowered[0, 5] / plain[0, 5]) / (lowered[0, 1] / plain[0, 1]),
        torch.tensor(1 / 1.1),
        atol=1e-4,
    )


def test_sdxl_long_prompt_uses_both_encoders_per_chunk(sdxl_pipe):
    words = " ".join(f"w{i}" for i in range(100))
    chunks = len(tokenize_weighted(words, sdxl_pipe.tokenizer))
    embeds = encode_prompts(sdxl_pipe, words, "ugly")
    assert chunks >= 2
    assert embeds.prompt_embeds.shape == (1, 77 * chunks, 64)  # 32 + 32 from the two encoders
    assert embeds.negative_prompt_embeds.shape == embeds.prompt_embeds.shape
    assert embeds.pooled_prompt_embeds.shape == (1, 32)
    assert embeds.chunks == chunks
