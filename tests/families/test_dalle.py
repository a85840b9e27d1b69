"""The DALL-E family: VQ tokenizer (round trip, codebook usage), the transformer's sampler (KV
cache equal to no cache, guidance 0 is the unconditional model, top-k / top-p), inpaint keeps
the unmasked tokens, re-ranking keeps the best by the scorer, and generation through the engine."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from dalle_tiny import (
    TINY_TOKENIZER,
    as_batch,
    drawn_picture,
    drawn_set,
    save_random_model,
    tiny_config,
)
from gan_vae_tiny import RecordingContext, same_pictures
from PIL import Image

from engine.api import GenerationRequest, Mode, RuntimeOptions
from engine.errors import InputError
from engine.families.dalle import (
    GuidedLogits,
    ImageTransformer,
    SamplingOptions,
    TransformerConfig,
    build,
    filter_logits,
    sample_tokens,
)
from engine.families.dalle_edit import inpaint_tokens, token_mask
from engine.families.dalle_vq import TokenizerConfig, VQTokenizer, codebook_usage
from engine.families.rerank import GalleryScorer, keep_best, rerank
from engine.generate import run_generation


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    return save_random_model(tmp_path_factory.mktemp("dalle") / "tiny-dalle")


def transformer(seed: int = 0, text_dim: int = 384) -> ImageTransformer:
    torch.manual_seed(seed)
    config = TransformerConfig(
        vocab_size=32, image_tokens=16, width=32, layers=2, heads=2, text_dim=text_dim
    )
    model = ImageTransformer(config).eval()
    # random init gives near-uniform logits; sharpen them so the sampler's choices matter
    with torch.no_grad():
        model.head.weight.mul_(40)
    return model


def generators(seed: int, count: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(seed + i) for i in range(count)]


def request(folder, **fields) -> GenerationRequest:
    fields.setdefault("sampler", "top-k")
    fields.setdefault("guidance_scale", 3.0)
    return GenerationRequest(model=str(folder), runtime=RuntimeOptions(cpu_threads=1), **fields)


# -- tokenizer ----------------------------------------------------------------------------------
def train_tokenizer(tokenizer: VQTokenizer, images: torch.Tensor, steps: int) -> None:
    optimizer = torch.optim.Adam(tokenizer.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    tokenizer.train()
    for _ in range(steps):
        loss, _ = tokenizer.loss(images, generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    tokenizer.eval()


def round_trip_error(tokenizer: VQTokenizer, images: torch.Tensor) -> float:
    with torch.no_grad():
        ids = tokenizer.encode(images)
        return float((tokenizer.decode(ids) - images).pow(2).mean())


def test_tokenizer_round_trip_error_falls_with_training():
    torch.manual_seed(0)
    tokenizer = VQTokenizer(TokenizerConfig(**TINY_TOKENIZER))
    images = as_batch([p for _, p in drawn_set()])
    ids = tokenizer.encode(images)
    assert ids.shape == (18, 4, 4) and ids.dtype == torch.int64
    assert int(ids.max()) < 32
    before = round_trip_error(tokenizer, images)
    train_tokenizer(tokenizer, images, 60)
    after = round_trip_error(tokenizer, images)
    assert after < 0.4 * before, (before, after)


def test_codebook_does_not_collapse_on_a_small_run():
    torch.manual_seed(0)
    images = as_batch([p for _, p in drawn_set()])
    with_restarts = VQTokenizer(TokenizerConfig(**TINY_TOKENIZER))
    train_tokenizer(with_restarts, images, 60)
    used = codebook_usage(with_restarts, images)
    # 18 pictures x 16 positions; white corners and flat colour share codes, so not all 32
    assert used >= 12, used
    torch.manual_seed(0)
    without = VQTokenizer(TokenizerConfig(**TINY_TOKENIZER, dead_threshold=0.0))
    train_tokenizer(without, images, 60)
    assert codebook_usage(without, images) < used  # the restarts are what keep codes in use


# -- sampling -----------------------------------------------------------------------------------
def test_kv_cache_sampler_gives_the_same_tokens_as_the_uncached_one():
    model = transformer()
    text = torch.nn.functional.normalize(
        torch.randn(1, 384, generator=torch.Generator().manual_seed(1)), dim=-1
    )
    options = SamplingOptions(sampler="top-k", top_k=8, guidance_scale=2.5)
    guide = GuidedLogits(model, text, None, 3, options.guidance_scale)
    with torch.no_grad():
        cached = sample_tokens(model, guide, generators(5, 3), options, use_cache=True)
        plain = sample_tokens(model, guide, generators(5, 3), options, use_cache=False)
        other_seed = sample_tokens(model, guide, generators(6, 3), options)
    assert cached.shape == (3, 16)
    assert torch.equal(cached, plain)
    assert not torch.equal(cached, other_seed)


def test_batch_image_i_is_the_single_image_of_seed_plus_i():
    model = transformer()
    options = SamplingOptions(sampler="top-p", top_p=0.8, guidance_scale=1.0)
    with torch.no_grad():
        batch = sample_tokens(
            model, GuidedLogits(model, None, None, 3, 1.0), generators(7, 3), options
        )
        single = sample_tokens(
            model, GuidedLogits(model, None, None, 1, 1.0), generators(9, 1), options
        )
    assert torch.equal(batch[2:], single)


def test_guidance_zero_is_the_unconditional_model():
    model = transformer()
    text = torch.nn.functional.normalize(torch.randn(1, 384), dim=-1)
    options = SamplingOptions(sampler="top-k", top_k=32, guidance_scale=0.0)
    with torch.no_grad():
        guided_zero = sample_tokens(
            model, GuidedLogits(model, text, None, 2, 0.0), generators(3, 2), options
        )
        unconditional = sample_tokens(
            model, GuidedLogits(model, None, None, 2, 1.0), generators(3, 2), options
        )
        conditional = sample_tokens(
            model, GuidedLogits(model, text, None, 2, 1.0), generators(3, 2), options
        )
    assert torch.equal(guided_zero, unconditional)
    assert not torch.equal(conditional, unconditional)  # the prompt does change the pictures


def test_top_k_and_top_p_keep_only_the_likeliest_tokens():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    top_k = filter_logits(logits, SamplingOptions(sampler="top-k", top_k=2))
    assert torch.isfinite(top_k).tolist() == [[True, True, False, False]]
    top_p = filter_logits(logits, SamplingOptions(sampler="top-p", top_p=0.7))
    assert torch.isfinite(top_p).tolist() == [[True, True, False, False]]
    everything = filter_logits(logits, SamplingOptions(sampler="top-p", top_p=1.0))
    assert torch.isfinite(everything).all()


# -- inpaint ------------------------------------------------------------------------------------
def test_inpaint_keeps_every_unmasked_token_exactly():
    model = transformer()
    known = torch.randint(0, 32, (2, 16), generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., 4:12, 8:16] = 1.0  # the right half of the middle rows, on a 4x4 token grid
    repaint = token_mask(mask, 4)
    assert repaint.sum() == 4 and repaint.view(4, 4)[1:3, 2:].all()
    options = SamplingOptions(top_k=32, guidance_scale=1.0)
    with torch.no_grad():
        tokens = inpaint_tokens(
            model,
            GuidedLogits(model, None, None, 2, 1.0),
            generators(1, 2),
            options,
            known,
            repaint,
        )
    assert torch.equal(tokens[:, ~repaint], known[:, ~repaint])
    assert not torch.equal(tokens[:, repaint], known[:, repaint])


def test_inpaint_through_the_engine_keeps_the_pixels_outside_the_mask(model_folder, tmp_path):
    source = drawn_picture("red", "circle", 40)
    source.save(tmp_path / "source.png")
    mask = Image.new("L", (40, 40), 0)
    mask.paste(255, (20, 0, 40, 40))
    mask.save(tmp_path / "mask.png")
    result = run_generation(
        request(
            model_folder,
            prompt="a blue square",
            mode=Mode.INPAINT,
            seed=4,
            batch_size=2,
            init_image=str(tmp_path / "source.png"),
            mask_image=str(tmp_path / "mask.png"),
        ),
        RecordingContext(),
    )
    for picture in result.images:
        assert picture.size == (40, 40)
        kept = np.asarray(picture)[:, :20]
        assert np.array_equal(kept, np.asarray(source)[:, :20])


# -- re-ranking ---------------------------------------------------------------------------------
def mean_colour(pictures) -> torch.Tensor:
    return torch.stack([torch.from_numpy(np.asarray(p, np.float32).mean((0, 1))) for p in pictures])


WORDS = ("red", "blue", "green")


def word_vector(text: str) -> torch.Tensor:
    return torch.tensor([float(w in text) for w in WORDS] + [0.01])


def test_reranking_keeps_the_k_best_by_the_scorer():
    # three pictures per colour: a candidate's three nearest share its colour
    kinds = [
        (c, s, shift) for c in WORDS for s, shift in (("square", 0), ("circle", 0), ("circle", 2))
    ]
    gallery = [drawn_picture(c, s, shift=shift) for c, s, shift in kinds]
    scorer = GalleryScorer(
        mean_colour(gallery),
        torch.stack([word_vector(f"a {c} {s}") for c, s, _ in kinds]),
        embed_pictures=mean_colour,
        embed_text=word_vector,
    )
    candidates = [
        drawn_picture(c, s) for c in ("green", "blue", "red", "blue") for s in ("circle",)
    ]
    scores = scorer(candidates, "a blue thing")
    assert scores.argmax() in (1, 3)
    kept = rerank(
        list(candidates),
        request("unused", prompt="a blue thing", seed=10, batch_size=2),
        {},
        RecordingContext(),
        scorer=scorer,
    )
    assert [p.info["easel_seed"] for p in kept] == [11, 13]  # the two blue ones, seeds kept
    assert keep_best(candidates, torch.tensor([0.1, 0.9, 0.5, 0.9]), 3) == [1, 3, 2]


def test_reranking_without_a_gallery_or_clip_says_what_to_do(model_folder):
    with pytest.raises(InputError, match="re-ranking gallery"):
        run_generation(
            request(model_folder, prompt="a red circle", extras={"candidates": 3}),
            RecordingContext(),
        )


# -- the engine ---------------------------------------------------------------------------------
def test_generation_through_the_engine_is_seeded_and_recorded(model_folder):
    ctx = RecordingContext()
    result = run_generation(request(model_folder, prompt="a red circle", seed=5, batch_size=3), ctx)
    assert [p.size for p in result.images] == [(16, 16)] * 3
    single = run_generation(
        request(model_folder, prompt="a red circle", seed=7), RecordingContext()
    )
    assert same_pictures(result.images[2], single.images[0], tolerance=2)  # conv rounding
    other = run_generation(
        request(model_folder, prompt="a blue square", seed=5), RecordingContext()
    )
    assert not same_pictures(result.images[0], other.images[0])
    meta = result.metadata[1]
    assert meta["family"] == "dalle" and meta["sampler"] == "top-k" and meta["seed"] == 6
    assert meta["extras"]["top_k"] == 64 and "steps" not in meta


def test_other_samplers_fall_back_and_unsupported_modes_are_refused(model_folder, tmp_path):
    ctx = RecordingContext()
    result = run_generation(request(model_folder, prompt="a red circle", sampler="Euler a"), ctx)
    assert result.metadata[0]["sampler"] == "top-k"
    assert any("top-k" in n for n in result.info.get("notices", [])) or ctx.of_type("Notice")
    drawn_picture("red", "circle").save(tmp_path / "init.png")
    with pytest.raises(InputError, match="image-to-image"):
        run_generation(
            request(
                model_folder, prompt="x", mode=Mode.IMG2IMG, init_image=str(tmp_path / "init.png")
            ),
            RecordingContext(),
        )
    with pytest.raises(InputError, match="top_k"):
        run_generation(request(model_folder, prompt="x", extras={"top_k": 0}), RecordingContext())


def test_a_bad_resolution_for_the_tokenizer_is_refused():
    from engine.families.dalle import check_config

    with pytest.raises(InputError, match="multiple of 4"):
        check_config(tiny_config(resolution=18))
    assert build(tiny_config()).grid_side == 4
