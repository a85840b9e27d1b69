"""Batch specs: grids expand in a stable order, JSONL takes what metadata and history hold,
keys ignore runtime options, bad specs get one clear message."""

from __future__ import annotations

import json

import pytest

from engine.api import GenerationRequest, RuntimeOptions
from engine.batch.spec import expand_grid, load_spec, request_key, seed_values
from engine.errors import InputError


def test_grid_multiplies_axes_with_models_outermost(tmp_path):
    spec = tmp_path / "grid.toml"
    spec.write_text(
        'steps = 4\nwidth = 64\nheight = 64\n[grid]\nmodels = ["m1", "m2"]\n'
        'prompts = ["a", "b"]\nseeds = "5-7"\nguidance = [3.0, 5.0]\n',
        encoding="utf-8",
    )
    items = load_spec(spec)
    assert len(items) == 2 * 2 * 3 * 2
    assert [i.request.model for i in items[:12]] == ["m1"] * 12  # one model load per worker
    assert [i.request.seed for i in items[:3]] == [5, 6, 7]
    assert {i.request.steps for i in items} == {4}
    assert [i.index for i in items] == list(range(24))
    assert len({i.key for i in items}) == 24


def test_seed_axis_spellings():
    assert seed_values("3-5") == [3, 4, 5]
    assert seed_values({"start": 10, "count": 2}) == [10, 11]
    assert seed_values([7, 9]) == [7, 9]
    with pytest.raises(InputError, match="ends before it starts"):
        seed_values("9-3")
    with pytest.raises(InputError, match="look like"):
        seed_values("one-two")


def test_unknown_axis_and_bad_values_are_named():
    with pytest.raises(InputError, match="Unknown grid axis 'colours'"):
        expand_grid({"grid": {"colours": ["red"]}})
    with pytest.raises(InputError, match="Steps must be between"):
        expand_grid({"steps": 0, "grid": {"prompts": ["a"]}})


def test_jsonl_reads_requests_and_gallery_metadata(tmp_path):
    plain = GenerationRequest(prompt="apple", seed=3, width=64, height=64).to_dict()
    # what the gallery stores for a random-seed run: the drawn seed under seed_used, extras
    history_row = {**plain, "prompt": "pear", "seed": 0, "seed_used": 42, "family": "ldm"}
    spec = tmp_path / "spec.jsonl"
    spec.write_text(
        "# a comment\n" + json.dumps(plain) + "\n\n" + json.dumps(history_row) + "\n",
        encoding="utf-8",
    )
    items = load_spec(spec)
    assert [(i.request.prompt, i.request.seed) for i in items] == [("apple", 3), ("pear", 42)]


def test_a_batch_size_becomes_one_item_per_seed_and_duplicates_go(tmp_path):
    request = GenerationRequest(prompt="apple", seed=10, batch_size=3).to_dict()
    again = GenerationRequest(prompt="apple", seed=11).to_dict()  # already image 2 of the batch
    spec = tmp_path / "spec.jsonl"
    spec.write_text(json.dumps(request) + "\n" + json.dumps(again) + "\n", encoding="utf-8")
    items = load_spec(spec)
    assert [(i.request.seed, i.request.batch_size) for i in items] == [(10, 1), (11, 1), (12, 1)]


def test_the_key_ignores_runtime_options_but_not_settings():
    request = GenerationRequest(prompt="apple", seed=1)
    on_gpu = request.replace(runtime=RuntimeOptions(device="cuda", cpu_threads=3))
    assert request_key(request) == request_key(on_gpu)
    assert request_key(request) != request_key(request.replace(seed=2))


def test_bad_specs_get_one_clear_message(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_spec(tmp_path / "missing.jsonl")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"prompt": "a"}\n{"prompt": \n', encoding="utf-8")
    with pytest.raises(InputError, match="line 2: not valid JSON"):
        load_spec(broken)
    wrong_kind = tmp_path / "train.jsonl"
    wrong_kind.write_text('{"type": "train"}\n', encoding="utf-8")
    with pytest.raises(InputError, match="cannot be batched"):
        load_spec(wrong_kind)
    text = tmp_path / "spec.txt"
    text.write_text("a red apple\n", encoding="utf-8")
    with pytest.raises(InputError, match="not a batch spec"):
        load_spec(text)
    bad_toml = tmp_path / "grid.toml"
    bad_toml.write_text("steps = = 4\n", encoding="utf-8")
    with pytest.raises(InputError, match="not valid TOML"):
        load_spec(bad_toml)


def test_yaml_grid(tmp_path):
    pytest.importorskip("yaml", reason="PyYAML is not installed")
    spec = tmp_path / "grid.yaml"
    spec.write_text("steps: 4\ngrid:\n  prompts: [a, b]\n  seeds: 1-2\n", encoding="utf-8")
    assert [(i.request.prompt, i.request.seed) for i in load_spec(spec)] == [
        ("a", 1),
        ("a", 2),
        ("b", 1),
        ("b", 2),
    ]


def test_workers_keep_their_model_while_it_has_work():
    """The Ray driver's hand-out order: an actor stays on its model; a free one takes the
    model with the most work left (so models load once per actor)."""
    from collections import deque

    from engine.batch.ray_runner import _next_for, _Slot

    queues = {"m1": deque(["a1", "a2", "a3"]), "m2": deque(["b1"])}
    first, second = _Slot(handle=None), _Slot(handle=None)
    assert _next_for(first, queues) == "a1" and first.model == "m1"
    assert _next_for(second, queues) == "a2" and second.model == "m1"  # m1 has the most left
    assert _next_for(first, queues) == "a3"
    assert _next_for(first, queues) == "b1" and first.model == "m2"
    assert _next_for(second, queues) is None


def test_actor_shapes_always_fit_the_cluster():
    from engine.batch.ray_runner import actor_shape

    cpu_box = {"CPU": 16.0}
    assert actor_shape(cpu_box, actors=0, cpus_per_actor=4, use_gpus=True) == (4, 4.0, 0.0)
    assert actor_shape({"CPU": 2.0}, actors=4, cpus_per_actor=2, use_gpus=True) == (4, 0.5, 0.0)
    gpu_box = {"CPU": 32.0, "GPU": 8.0}
    assert actor_shape(gpu_box, actors=0, cpus_per_actor=2, use_gpus=True) == (8, 1.0, 1.0)
    assert actor_shape(gpu_box, actors=16, cpus_per_actor=2, use_gpus=True) == (16, 1.0, 0.5)
    assert actor_shape(gpu_box, actors=0, cpus_per_actor=8, use_gpus=False) == (4, 8.0, 0.0)
