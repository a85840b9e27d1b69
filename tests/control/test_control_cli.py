"""`easel generate --control ...` on tiny models; unbuilt steering is refused, not ignored."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from engine.api_control import ImagePrompt
from engine.events import Failed
from tests.control.conftest import make_request


def test_cli_control_flag_runs_a_unit_and_writes_it_in_the_metadata(
    control_models, pictures, tmp_path
):
    from desktop.cli import main

    out = tmp_path / "out.png"
    cn = control_models["cn_sd1"]["file"]
    args = ["generate", "an apple", "--model", str(control_models["sd1"]), "--steps", "2"]
    args += ["--width", "64", "--height", "64", "--seed", "3", "--device", "cpu"]
    args += ["--precision", "fp32", "--threads", "1", "--quiet", "-o", str(out)]
    args += ["--control", f"canny:{pictures / 'drawing.png'}:0.8", "--control-model", str(cn)]
    assert main(args) == 0
    text = Image.open(out).info["parameters"]
    assert 'ControlNet 0: "Module: canny, Model: controlnet-3 [' in text
    assert "Weight: 0.8" in text


def test_cli_without_a_controlnet_in_the_library_says_so(control_models, pictures, capsys):
    from desktop.cli import main

    code = main(
        ["generate", "x", "--model", str(control_models["sd1"]), "--quiet"]
        + ["--control", f"canny:{pictures / 'drawing.png'}"]
    )
    assert code != 0
    assert "No ControlNet" in capsys.readouterr().err


@pytest.mark.parametrize(
    "field",
    [
        {"image_prompts": [ImagePrompt(image="/tmp/ref.png")]},
    ],
)
def test_unbuilt_steering_is_refused_and_the_engine_keeps_serving(engine, control_models, field):
    final = engine.run(make_request(control_models["sd1"], **field), timeout=300)
    assert isinstance(final, Failed) and "cannot run yet" in final.message
    ok = engine.run(make_request(control_models["sd1"]), timeout=300)
    assert np.asarray(ok.images[0]).shape == (64, 64, 3)
