"""Requests: validation with actionable messages and lossless dict/JSON round trips."""

from __future__ import annotations

import subprocess
import sys

import pytest

from engine.api import (
    GenerationRequest,
    LoraRef,
    Mode,
    RuntimeOptions,
    TrainingRequest,
    request_from_dict,
)
from engine.errors import InputError


def test_round_trip_generation_request():
    request = GenerationRequest(
        prompt="a red apple",
        negative_prompt="blurry",
        model="builtin:emoji-ldm",
        mode=Mode.INPAINT,
        seed=42,
        steps=12,
        sampler="DPM++ 2M Karras",
        width=640,
        height=384,
        batch_size=2,
        init_image="/tmp/a.png",
        mask_image="/tmp/m.png",
        loras=(LoraRef("/tmp/x.safetensors", 0.7),),
        extras={"eta": 0.5},
        runtime=RuntimeOptions(device="cpu", precision="bf16", cpu_threads=2),
    )
    data = request.to_dict()
    assert data["type"] == "generate" and data["mode"] == "inpaint"
    assert GenerationRequest.from_dict(data) == request
    assert request_from_dict(GenerationRequest.from_json(request.to_json()).to_dict()) == request


def test_from_dict_ignores_unknown_and_fills_defaults():
    request = GenerationRequest.from_dict({"prompt": "x", "future_field": 1})
    assert request.prompt == "x" and request.steps == GenerationRequest().steps


def test_training_request_round_trip():
    request = TrainingRequest(family="vae", data_dir="/d", out_dir="/o", extras={"beta": 4.0})
    assert request_from_dict(request.to_dict()) == request


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"width": 500}, "multiple of 8; use 504"),
        ({"steps": 0}, "Steps must be between"),
        ({"strength": 1.5}, "Strength"),
        ({"sampler": "Bogus"}, "Unknown sampler 'Bogus'"),
        ({"mode": "img2img"}, "needs an init image"),
        ({"mode": "inpaint", "init_image": "x.png"}, "needs a mask"),
        ({"mode": "paint"}, "Unknown mode 'paint'"),
        ({"seed": -1}, "Seed"),
    ],
)
def test_validation_messages(changes, words):
    with pytest.raises(InputError, match=words):
        GenerationRequest(**changes)


def test_api_imports_without_torch():
    code = (
        "import sys; import engine.api, engine.events, engine.worker, engine.paths; "
        "sys.exit(1 if 'torch' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
