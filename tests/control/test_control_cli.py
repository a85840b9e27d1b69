"""`easel generate --control ... --ip-adapter ... --hires ... --region ...` on tiny models."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image


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


def _cli_args(control_models, out, *extra) -> list[str]:
    args = ["generate", "an apple", "--model", str(control_models["sd1"]), "--steps", "2"]
    args += ["--seed", "3", "--device", "cpu", "--precision", "fp32", "--threads", "1"]
    return [*args, "--quiet", "-o", str(out), *extra]


def test_cli_hires_flag_makes_the_final_size_in_one_job(control_models, tmp_path):
    import json

    from desktop.cli import main

    out = tmp_path / "hires.png"
    flags = ["--width", "128", "--height", "128", "--hires", "2x", "--hires-strength", "0.6"]
    assert main(_cli_args(control_models, out, *flags)) == 0
    image = Image.open(out)
    assert image.size == (128, 128)
    assert "Size: 64x64" in image.info["parameters"]
    assert "Hires upscale: 2" in image.info["parameters"]
    assert json.loads(image.info["easel"])["hires"]["strength"] == 0.6


def test_cli_region_flag_steers_the_masked_area(control_models, pictures, tmp_path):
    import json

    from desktop.cli import main
    from engine.cli.control_args import parse_region

    mask = pictures / "mask-right.png"
    plain, steered = tmp_path / "plain.png", tmp_path / "region.png"
    assert main(_cli_args(control_models, plain, "--width", "64", "--height", "64")) == 0
    region = f"{mask}:a blue (ocean:1.2) with waves:0.8"
    args = _cli_args(control_models, steered, "--width", "64", "--height", "64")
    assert main([*args, "--region", region]) == 0
    stored = json.loads(Image.open(steered).info["easel"])["regions"]
    assert stored == [{"mask": str(mask), "prompt": "a blue (ocean:1.2) with waves", "weight": 0.8}]
    change = np.abs(
        np.asarray(Image.open(steered)).astype(int) - np.asarray(Image.open(plain)).astype(int)
    )
    assert change.mean() > 1.0
    assert parse_region("C:\\masks\\sky.png:a sky").prompt == "a sky"  # a drive's colon
    with pytest.raises(Exception, match="MASK:PROMPT"):
        parse_region("mask-only.png")
