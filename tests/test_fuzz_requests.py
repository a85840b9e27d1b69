"""Property-based fuzzing of what Easel reads from outside: stored requests (`from_dict`, as
metadata, history and batch files give them) and the A1111 prompt-weighting parser. Never an
exception other than EaselError, never a hang, bounded output."""

from __future__ import annotations

import json
import math
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.api import REQUEST_TYPES, GenerationRequest, TrainingRequest
from engine.errors import EaselError
from engine.sd.prompts import MAX_WEIGHT, parse_weighted_prompt

FAST = settings(max_examples=150, deadline=1000, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=25,
)
field_names = st.sampled_from(
    [f for cls in (GenerationRequest, TrainingRequest) for f in cls.__dataclass_fields__]
)
stored = st.dictionaries(field_names | st.text(max_size=8), json_values, max_size=12)


@FAST
@given(stored, st.sampled_from(sorted(REQUEST_TYPES)))
def test_from_dict_gives_a_request_or_an_easel_error(data, kind):
    cls = REQUEST_TYPES[kind]
    try:
        request = cls.from_dict(data)
    except EaselError:
        return
    # what it accepted round-trips and validates again
    again = cls.from_json(request.to_json())
    assert again == request


@FAST
@given(st.dictionaries(st.sampled_from(list(GenerationRequest.__dataclass_fields__)), json_values))
def test_generation_fields_of_wrong_types_are_refused_by_name(data):
    try:
        request = GenerationRequest.from_dict(data)
    except EaselError as exc:
        assert str(exc)
        return
    assert isinstance(request.steps, int) and isinstance(request.prompt, str)
    assert isinstance(request.seed, int) and not isinstance(request.seed, bool)
    json.dumps(request.to_dict())


def test_deep_nesting_and_non_objects_are_refused():
    deep: list = []
    for _ in range(5000):
        deep = [deep]
    for data in ({"extras": {"a": deep}, "loras": deep}, [1, 2], "text", None, 5):
        try:
            GenerationRequest.from_dict(data)
        except EaselError:
            pass


prompt_text = st.text(
    alphabet=st.sampled_from(list("()[]:\\, abBREAK0123456789.-e")), max_size=300
) | st.text(max_size=200)


@FAST
@given(prompt_text)
def test_prompt_parser_keeps_the_text_and_bounds_weights(text):
    parsed = parse_weighted_prompt(text)
    for fragment, weight in parsed:
        assert fragment is None or isinstance(fragment, str)
        assert math.isfinite(weight) and abs(weight) <= MAX_WEIGHT
    assert sum(len(f) for f, _ in parsed if f) <= len(text)


def test_pathological_prompts_stay_fast():
    for text in ("(a" * 10_000 + ")" * 10_000, "[" * 20_000, "(x:1e308)" * 2000, "\\" * 20_000):
        started = time.perf_counter()
        parsed = parse_weighted_prompt(text)
        assert time.perf_counter() - started < 5.0
        assert all(math.isfinite(w) for _, w in parsed)
