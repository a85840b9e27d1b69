"""Known-concept steering (engine.text.concepts): the maths, the file, and the request knob."""

from __future__ import annotations

import pytest
import torch

from engine.api import GenerationRequest
from engine.errors import InputError, ModelError
from engine.text.concepts import (
    CONCEPTS_FILE,
    ConceptSet,
    concept_strength,
    load_concepts,
    save_concepts,
    steer_prompt,
    unfamiliar_prompt_notice,
)


def unit(rows) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.tensor(rows, dtype=torch.float32), dim=-1)


@pytest.fixture
def concepts() -> ConceptSet:
    return ConceptSet(("cat", "dog", "apple"), unit([[1, 0, 0], [0, 1, 0], [0, 0, 1]]))


def test_strength_zero_keeps_the_prompt_and_one_lands_on_the_nearest(concepts):
    query = unit([[0.9, 0.1, 0.3]])
    assert torch.allclose(concepts.steer(query, 0.0).embedding, query)
    steered = concepts.steer(query, 1.0, k=1)
    assert torch.allclose(steered.embedding, unit([[1, 0, 0]]), atol=1e-6)
    assert steered.neighbours[0][0] == "cat"


def test_steering_moves_toward_known_concepts_and_stays_unit(concepts):
    query = unit([[0.6, 0.5, 0.62]])
    steered = concepts.steer(query, 0.5, k=3, temperature=0.05).embedding
    assert steered.norm().item() == pytest.approx(1.0, abs=1e-5)
    best_before = (concepts.embeddings @ query[0]).max()
    assert (concepts.embeddings @ steered[0]).max() > best_before
    with pytest.raises(ValueError):
        concepts.steer(query, 1.5)


def test_file_round_trip_dedupes_and_broken_file_is_a_model_error(tmp_path):
    captions = ["cat", "dog", "cat"]
    embeddings = unit([[1, 0], [0, 1], [1, 0]])
    path = save_concepts(tmp_path, captions, embeddings, "all-MiniLM-L6-v2")
    loaded = load_concepts(tmp_path)
    assert path.name == CONCEPTS_FILE
    assert loaded.captions == ("cat", "dog")
    assert loaded.text_encoder == "all-MiniLM-L6-v2"
    assert torch.allclose(loaded.embeddings, embeddings[:2], atol=1e-3)
    assert load_concepts(tmp_path / "nowhere") is None
    path.write_bytes(b"not a safetensors file")
    with pytest.raises(ModelError, match="delete it"):
        load_concepts(tmp_path)


def test_request_knob_overrides_config_and_is_range_checked(concepts):
    request = GenerationRequest(model="m", prompt="x", extras={"concept_strength": 0.25})
    assert concept_strength({"concept_strength": 0.9}, request) == 0.25
    assert concept_strength({}, GenerationRequest(model="m", prompt="x")) == 0.0
    with pytest.raises(InputError, match="between 0"):
        concept_strength(
            {}, GenerationRequest(model="m", prompt="x", extras={"concept_strength": 2})
        )
    query = unit([[0.6, 0.5, 0.62]])
    config = {"concept_strength": 1.0, "concept_neighbours": 1}
    plain = GenerationRequest(model="m", prompt="x")
    assert torch.allclose(steer_prompt(query, concepts, config, plain), unit([[0, 0, 1]]))
    assert steer_prompt(query, None, config, plain) is query
    assert steer_prompt(None, concepts, config, plain) is None


def test_only_a_prompt_far_from_every_caption_gets_a_notice():
    far = {"known_concepts": "squid (0.69); coral (0.62)", "known_concept_similarity": 0.69}
    near = {"known_concepts": "rocket (1.00)", "known_concept_similarity": 1.0}
    text = unfamiliar_prompt_notice("octopus", far)
    assert "\u201coctopus\u201d" in text and "(squid, coral)" in text
    assert "Concepts at 0 %" in text
    assert unfamiliar_prompt_notice("rocket", near) is None
    one = {"known_concepts": "squid (0.69)", "known_concept_similarity": 0.69}
    assert "the nearest thing it knows (squid)" in unfamiliar_prompt_notice("octopus", one)
    assert unfamiliar_prompt_notice("octopus", {}) is None
    long_prompt = "an octopus " * 20
    assert "..." in unfamiliar_prompt_notice(long_prompt, far)


def test_metadata_names_only_the_concepts_the_steering_mixed_in():
    from engine.text.concepts import concepts_used
    from engine.text.minilm import shared_encoder

    captions = ("cat face", "dog face", "red apple", "sun")
    known = ConceptSet(captions, shared_encoder().encode(list(captions)))
    request = GenerationRequest(model="m", prompt="kitten face", extras={"concept_strength": 0.8})
    one = concepts_used(known, {"concept_neighbours": 1}, request)
    assert one["known_concepts"].startswith("cat face (") and ";" not in one["known_concepts"]
    several = concepts_used(known, {}, request)  # the default mixes 4: the 3 nearest are named
    assert several["known_concepts"].count(";") == 2
