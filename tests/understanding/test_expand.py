"""Prompt expansion: MiniLM retrieval (real embeddings) and a tiny random GPT-2 from a folder."""

from __future__ import annotations

import pytest
import torch

from engine.api import ExpandPromptRequest, RuntimeOptions
from engine.context import JobContext
from engine.errors import InputError, ModelError
from engine.events import Cancelled, Failed, Progress, Result
from engine.prompting.expand import MAX_PROMPT_CHARS, clip_length, closest_style, run_expand
from engine.prompting.sampling import load_causal_lm, nucleus_sample
from tests.understanding.tiny_models import save_tiny_clip, save_tiny_gpt2

ONE_THREAD = RuntimeOptions(cpu_threads=1)


@pytest.fixture(scope="module")
def gpt2_folder(tmp_path_factory):
    return save_tiny_gpt2(tmp_path_factory.mktemp("tiny-gpt2"))


def expand(events: list | None = None, **fields) -> Result:
    sink = [] if events is None else events
    request = ExpandPromptRequest(runtime=ONE_THREAD, **fields)
    return run_expand(request, JobContext(1, sink.append))


@pytest.mark.parametrize(
    ("prompt", "style"),
    [
        ("portrait of an old fisherman", "Portrait Photo"),
        ("pixel art knight for a retro game", "Pixel Art"),
        ("a bowl of ramen on a wooden table", "Food Photography"),
    ],
)
def test_retrieval_finds_the_fitting_style(prompt, style):
    assert closest_style(prompt).name == style


def test_retrieval_expansion_is_seeded_and_keeps_the_prompt():
    first = expand(prompt="a lighthouse on a cliff at dusk", seed=0).info
    assert first["method"] == "retrieval"
    assert "a lighthouse on a cliff at dusk" in first["prompt"]
    assert len(first["keywords"]) >= 4 and first["negative_prompt"]
    assert all(k in first["prompt"] for k in first["keywords"])
    assert expand(prompt="a lighthouse on a cliff at dusk", seed=0).info == first
    others = {
        expand(prompt="a lighthouse on a cliff at dusk", seed=s).info["prompt"] for s in (1, 2)
    }
    assert others - {first["prompt"]}  # another seed can pick other close keywords


def test_retrieval_does_not_repeat_what_the_prompt_says():
    info = expand(prompt="a forest at golden hour, close-up, serene").info
    assert info["prompt"].lower().count("golden hour") == 1
    assert "close-up" not in info["keywords"] and "serene" not in info["keywords"]


def test_language_model_expansion_is_seeded_and_bounded(gpt2_folder):
    events = []
    fox = "a red fox in the snow"
    a = expand(events, prompt=fox, model=str(gpt2_folder), seed=7, max_new_tokens=12)
    b = expand(prompt="a red fox in the snow", model=str(gpt2_folder), seed=7, max_new_tokens=12)
    c = expand(prompt="a red fox in the snow", model=str(gpt2_folder), seed=8, max_new_tokens=12)
    assert a.info["method"] == "language model"
    assert a.info["prompt"] == b.info["prompt"]
    assert a.info["prompt"] != c.info["prompt"]
    assert a.info["prompt"].startswith("a red fox in the snow")
    assert "\ufffd" not in a.info["prompt"] and "\n" not in a.info["prompt"]
    written = [e.step for e in events if isinstance(e, Progress) and e.info["stage"] == "Writing"]
    assert written == list(range(1, len(written) + 1)) and len(written) <= 12


def test_language_model_runs_in_the_engine_and_cancels(engine, gpt2_folder):
    progress = []
    request = ExpandPromptRequest(
        prompt="a castle", model=str(gpt2_folder), max_new_tokens=40, runtime=ONE_THREAD
    )

    def cancel_at_third_token(event):
        if isinstance(event, Progress) and event.info.get("stage") == "Writing":
            progress.append(event.step)
            if event.step == 3:
                engine.cancel(event.job_id)

    engine.subscribe(cancel_at_third_token)
    final = engine.run(request)
    engine.unsubscribe(cancel_at_third_token)
    if isinstance(final, Result):  # the model stopped by itself (end token) before token 3
        assert max(progress, default=0) < 3
    else:
        assert isinstance(final, Cancelled) and progress[-1] == 3


def test_wrong_kind_of_model_folder_is_refused(tmp_path, engine):
    clip_folder = save_tiny_clip(tmp_path / "clip")
    final = engine.run(ExpandPromptRequest(prompt="a cat", model=str(clip_folder)))
    assert isinstance(final, Failed) and final.kind == "ModelError"
    assert "holds a 'clip' model, not a causal language model" in final.message
    with pytest.raises(ModelError, match="no config.json"):
        load_causal_lm(tmp_path)
    with pytest.raises(ModelError, match="does not exist"):
        load_causal_lm(tmp_path / "nope")


def test_nucleus_sampling_with_tiny_top_p_is_greedy():
    logits = torch.tensor([0.1, 2.0, 0.3, 1.9])
    generator = torch.Generator().manual_seed(0)
    picks = {
        nucleus_sample(logits, temperature=1.0, top_p=0.01, generator=generator) for _ in range(20)
    }
    assert picks == {1}


def test_length_is_bounded_and_empty_prompts_refused():
    long = ", ".join(f"fragment number {i}" for i in range(100))
    clipped = clip_length(long)
    assert len(clipped) <= MAX_PROMPT_CHARS and not clipped.endswith(",")
    with pytest.raises(InputError, match="Type a prompt"):
        ExpandPromptRequest(prompt="   ")
