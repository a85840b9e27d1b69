"""The models shipped in resources/models/ load through the ordinary library code, generate
deterministically from a seed, make pictures that are not constant, and carry model cards that
name their licence and data source. (Reproducing their training is a documented command, not a
test: see each card.)"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from engine.api import GenerationRequest, RuntimeOptions
from engine.events import Result
from engine.library.builtin_choice import best_builtin, default_model
from engine.library.resolve import resolve_model
from engine.paths import resource

BUILTINS = {
    "emoji-ldm": "ldm",
    "emoji-dalle": "dalle",
    "emoji-dcgan": "dcgan",
    "emoji-beta-vae": "beta-vae",
}
TEXT_MODELS = ("emoji-ldm", "emoji-dalle")
#: a picture whose pixels vary less than this (std of 0..255 values) counts as constant
VARIATION_FLOOR = 8.0


@pytest.fixture(autouse=True)
def two_threads():
    torch.set_num_threads(2)


def request(name: str, **fields) -> GenerationRequest:
    fields.setdefault("steps", 8)
    fields.setdefault("sampler", "DDIM")
    fields.setdefault("guidance_scale", 3.0)
    return GenerationRequest(
        model=f"builtin:{name}", runtime=RuntimeOptions(cpu_threads=2), **fields
    )


def pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=np.float64)


@pytest.mark.parametrize(("name", "family"), BUILTINS.items())
def test_builtin_resolves_through_the_library(name, family):
    resolved = resolve_model(f"builtin:{name}")
    assert resolved.family == family and resolved.layout == "native"
    assert resolved.path == resource("models", name)


def test_the_default_model_is_the_built_in_that_measures_best():
    best = best_builtin()
    assert best in BUILTINS and BUILTINS[best] in ("ldm", "dalle")  # one that takes a prompt
    assert default_model() == f"builtin:{best}"
    assert resolve_model("").path == resource("models", best)


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_generates_deterministically_and_not_constant(engine, name):
    prompt = "a red apple" if name in TEXT_MODELS else ""
    first = engine.run(request(name, prompt=prompt, seed=11, batch_size=2), timeout=120)
    again = engine.run(request(name, prompt=prompt, seed=11, batch_size=2), timeout=120)
    other = engine.run(request(name, prompt=prompt, seed=12), timeout=120)
    assert isinstance(first, Result), getattr(first, "message", first)
    a, b, c = (pixels(r.images[0]) for r in (first, again, other))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.std() > VARIATION_FLOOR, f"{name} made a near-constant picture"
    assert not np.array_equal(pixels(first.images[0]), pixels(first.images[1]))


def test_the_prompt_and_the_negative_prompt_steer_the_default_model(engine):
    apple = engine.run(request("emoji-ldm", prompt="a red apple", seed=3), timeout=120)
    rocket = engine.run(request("emoji-ldm", prompt="rocket", seed=3), timeout=120)
    negative = engine.run(
        request("emoji-ldm", prompt="a red apple", negative_prompt="red", seed=3), timeout=120
    )
    base = pixels(apple.images[0])
    assert np.abs(base - pixels(rocket.images[0])).mean() > 2.0
    assert np.abs(base - pixels(negative.images[0])).mean() > 2.0
    assert apple.images[0].size == (64, 64)


@pytest.mark.parametrize("name", BUILTINS)
def test_model_cards_name_licence_source_and_reproduction(name):
    folder = resource("models", name)
    card = (folder / "README.md").read_text(encoding="utf-8")
    assert "MIT" in card and "Microsoft" in card and "fluent-emoji-flat" in card
    assert "scripts/build_builtin_models.py" in card  # the command that reproduces it
    assert "FID" in card
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    assert config["family"] == BUILTINS[name]


def test_shipped_weights_stay_small():
    total = sum(resource("models", n, "model.safetensors").stat().st_size for n in BUILTINS)
    assert total < 60 * 1024 * 1024  # issue 14: all shipped weights under 60 MB
