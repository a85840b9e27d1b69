"""Latent diffusion: the autoencoder, text conditioning through MiniLM, model folders through the
engine, guidance with a negative prompt, cancel, and training through the shared runner."""

from __future__ import annotations

import pytest
import torch
from diffusion_tiny import TINY_AE, ldm_training_request, save_random_model
from gan_vae_tiny import RecordingContext, same_pictures, write_pictures

from engine.api import GenerationRequest, RuntimeOptions
from engine.errors import InputError, JobCancelled, ModelError
from engine.families.ldm import Autoencoder, AutoencoderConfig
from engine.families.registry import load_native_model
from engine.generate import run_generation
from engine.training.diffusion import AutoencoderStepper
from engine.training.runner import run_training


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def text_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ldm") / "tiny-ldm"
    return save_random_model("ldm", folder, conditioning="text")


def request(folder, **fields) -> GenerationRequest:
    fields.setdefault("steps", 5)
    fields.setdefault("sampler", "DDIM")
    fields.setdefault("guidance_scale", 3.0)
    return GenerationRequest(model=str(folder), runtime=RuntimeOptions(cpu_threads=1), **fields)


def test_autoencoder_shapes_and_learning():
    torch.manual_seed(0)
    ae = Autoencoder(AutoencoderConfig(**TINY_AE))
    images = torch.zeros(8, 3, 16, 16)
    images[:, 0] = 0.9
    images[:, :, 4:12, 4:12] = -0.8
    mean, logvar = ae.encode(images)
    assert mean.shape == logvar.shape == (8, 4, 4, 4)
    assert ae.decode(mean).shape == images.shape
    stepper = AutoencoderStepper(ae, lr=5e-3)
    first = stepper.step(images)["l1"]
    for _ in range(25):
        last = stepper.step(images)["l1"]
    assert last < 0.6 * first


def test_text_to_image_through_the_engine_is_seeded_and_follows_the_prompt(text_model):
    native = load_native_model(text_model)
    assert native.family == "ldm" and native.model.unet.config.conditioning == "text"
    apple = run_generation(request(text_model, prompt="a red apple", seed=3), RecordingContext())
    again = run_generation(request(text_model, prompt="a red apple", seed=3), RecordingContext())
    cat = run_generation(request(text_model, prompt="cat face", seed=3), RecordingContext())
    negative = run_generation(
        request(text_model, prompt="a red apple", negative_prompt="green", seed=3),
        RecordingContext(),
    )
    assert apple.images[0].size == (16, 16)
    assert same_pictures(apple.images[0], again.images[0])
    assert not same_pictures(apple.images[0], cat.images[0])
    assert not same_pictures(apple.images[0], negative.images[0])
    assert apple.metadata[0]["prompt"] == "a red apple" and apple.metadata[0]["family"] == "ldm"


def test_batches_empty_prompts_previews_and_cancel(text_model):
    ctx = RecordingContext()
    result = run_generation(request(text_model, prompt="", batch_size=3, steps=10), ctx)
    assert len(result.images) == 3 and [p.step for p in ctx.of_type("Progress")][-1] == 10
    assert ctx.of_type("Preview")  # decoded x0 estimates while sampling

    stopping = RecordingContext(cancel_after=2)
    with pytest.raises(JobCancelled):
        run_generation(request(text_model, prompt="rocket", steps=10), stopping)
    assert len(stopping.steps()) == 2


def test_training_an_ldm_with_captions_through_the_runner(tmp_path):
    pictures = write_pictures(tmp_path / "pictures", count=6)
    for index, png in enumerate(sorted(pictures.glob("*.png"))):
        png.with_suffix(".txt").write_text(f"red square number {index}")
    out = tmp_path / "ldm"
    train = ldm_training_request(pictures, out, sample_every=6, extras={"conditioning": "text"})
    ctx = RecordingContext()
    run_training(train, ctx)
    progress = ctx.of_type("Progress")
    assert "autoencoder_l1" in progress[0].info["losses"]  # the autoencoder goes first
    native = load_native_model(out)
    assert native.config["conditioning"] == "text" and native.config["latent_scale"] != 1.0
    image = run_generation(request(out, prompt="red square"), RecordingContext()).images[0]
    assert image.size == (16, 16)
    # its captions are stored as known concepts, steering off until the user asks for it
    captions = load_native_model(out).model.known_concepts.captions
    assert captions == tuple(f"red square number {i}" for i in range(6))
    assert native.config["concept_strength"] == 0.0 and native.config["concept_neighbours"] == 1
    steered = run_generation(
        request(out, prompt="a crimson box", extras={"concept_strength": 0.8}), RecordingContext()
    )
    assert steered.metadata[0]["known_concepts"].startswith("red square number")


def test_known_concepts_steer_the_prompt_and_are_named_in_metadata(tmp_path):
    """With concepts.safetensors an unseen prompt is steered (a different picture, its nearest
    known concepts in the metadata); strength 0 draws the prompt as a folder without them."""
    import shutil

    from engine.text.concepts import save_concepts
    from engine.text.minilm import shared_encoder

    folder = tmp_path / "ldm-concepts"
    save_random_model("ldm", folder, conditioning="text")
    known = ["red apple", "cat face", "sun"]
    save_concepts(folder, known, shared_encoder().encode(known), "all-MiniLM-L6-v2")
    plain = tmp_path / "ldm-plain"
    shutil.copytree(folder, plain)
    (plain / "concepts.safetensors").unlink()

    def draw(model, prompt, **extras):
        return run_generation(
            request(model, prompt=prompt, seed=4, extras=extras), RecordingContext()
        )

    snapped = draw(folder, "a kitten's face", concept_strength=1.0)
    nearest = draw(plain, "cat face")
    typed = draw(folder, "a kitten's face", concept_strength=0.0)
    assert same_pictures(typed.images[0], draw(plain, "a kitten's face").images[0])
    assert not same_pictures(snapped.images[0], typed.images[0])
    assert snapped.metadata[0]["known_concepts"].startswith("cat face")
    assert snapped.metadata[0]["concept_strength"] == 1.0
    assert "known_concepts" not in nearest.metadata[0]
    assert "known_concepts" not in typed.metadata[0]  # strength 0: nothing leaned on
    # a prompt the model never saw is explained, a caption it knows is not
    assert any("leaned on the nearest things it knows (cat face" in n for n in notices(snapped))
    assert not [n for n in notices(draw(folder, "sun", concept_strength=1.0)) if "leaned" in n]


def notices(outcome) -> list[str]:
    return [str(n) for n in outcome.info.get("notices", [])]


def test_candidates_are_reranked_by_the_gallery_beside_the_weights(tmp_path):
    """candidates = 3 makes three pictures (seeds s, s+1, s+2) and keeps the one whose nearest
    gallery pictures have captions closest to the prompt; the kept picture's metadata seed
    redraws it exactly with one candidate."""
    from engine.families.rerank import GALLERY_FILE, inception_features, save_gallery
    from engine.text.minilm import shared_encoder

    folder = save_random_model("ldm", tmp_path / "ldm-rerank", conditioning="text")
    drawn = run_generation(
        request(folder, prompt="a red apple", seed=20, batch_size=3), RecordingContext()
    ).images
    # each candidate thrice in the gallery (its three nearest are its own copies), and only
    # the third one captioned as the prompt
    features = inception_features(drawn).repeat_interleave(3, dim=0)
    captions = [c for c in ("a blue car", "a green tree", "a red apple") for _ in range(3)]
    save_gallery(folder, features, shared_encoder().encode(captions), "test")
    assert (folder / GALLERY_FILE).is_file()

    ranked = run_generation(
        request(folder, prompt="a red apple", seed=20, extras={"candidates": 3}),
        RecordingContext(),
    )
    assert len(ranked.images) == 1
    assert ranked.metadata[0]["seed"] == 22
    assert same_pictures(ranked.images[0], drawn[2])
    assert any("Kept the best 1 of 3 candidates" in n for n in notices(ranked))

    (folder / GALLERY_FILE).write_bytes(b"not a safetensors file")
    with pytest.raises(ModelError, match="re-ranking gallery"):
        run_generation(
            request(folder, prompt="a red apple", extras={"candidates": 2}), RecordingContext()
        )


def test_candidates_without_a_gallery_say_what_to_do(text_model):
    with pytest.raises(InputError, match="no re-ranking gallery"):
        run_generation(
            request(text_model, prompt="a red apple", extras={"candidates": 2}),
            RecordingContext(),
        )
