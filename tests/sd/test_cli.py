"""`easel generate` end to end, as a user runs it: a real process on a tiny pipeline."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.cli.generate import output_paths, parse_lora
from engine.errors import InputError
from engine.metadata import read_generation_metadata
from tests.helpers.signals import sigint_reaches_child

REPO = Path(__file__).resolve().parents[2]
EASEL = [sys.executable, "-c", "import sys; from engine.cli import main; sys.exit(main())"]


def easel(*args: str, **popen) -> list[str]:
    return [*EASEL, "generate", *args]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO)
    return env


def test_generate_writes_a_batch_with_metadata(tiny_models, tmp_path):
    out = tmp_path / "apple.png"
    done = subprocess.run(
        easel(
            "a (red:1.2) apple",
            "--model", str(tiny_models["sd1"]),
            "-o", str(out),
            "--steps", "3", "--width", "64", "--height", "48", "--batch", "2",
            "--seed", "11", "--sampler", "DPM++ 2M Karras", "--threads", "1",
            "--precision", "fp32", "--device", "cpu",
        ),
        cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "3/3 steps" in done.stderr  # the progress bar
    written = [tmp_path / "apple-1.png", tmp_path / "apple-2.png"]
    assert done.stdout.split() == [str(p) for p in written]
    for path, seed in zip(written, (11, 12), strict=True):
        request = read_generation_metadata(path)
        assert (request.seed, request.width, request.height) == (seed, 64, 48)
        assert request.prompt == "a (red:1.2) apple" and request.sampler == "DPM++ 2M Karras"
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--width", "65"], 2, "Width 65 is not a multiple of 8; use 64."),
        (["--sampler", "Heun++"], 2, "Unknown sampler 'Heun++'"),
        (["--mask", "m.png"], 2, "--mask needs --init"),
        (["-o", "out.jpg"], 2, "must be a .png file"),
        (["--model", "/nonexistent/model"], 3, "Model not found"),
    ],
)
def test_bad_input_exit_codes(tmp_path, args, code, message):
    done = subprocess.run(
        easel("a cat", "-o", str(tmp_path / "out.png"), *args),
        cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == code, done.stderr
    assert message in done.stderr
    assert not list(tmp_path.glob("*.png"))


def test_ctrl_c_cancels_cleanly_with_exit_130(tiny_models, tmp_path):
    out = tmp_path / "never.png"
    process = subprocess.Popen(
        easel(
            "a slow apple", "--model", str(tiny_models["sd1"]), "-o", str(out),
            "--steps", "400", "--width", "64", "--height", "64", "--threads", "1",
            "--precision", "fp32",
        ),
        cwd=REPO, env=_env(), stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        preexec_fn=sigint_reaches_child,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        for line in process.stderr:
            if "2/400 steps" in line:
                break
            assert time.monotonic() < deadline, "no progress from the CLI"
        process.send_signal(signal.SIGINT)
        _, rest = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130
    assert "cancelled" in rest
    assert "400/400" not in rest
    assert not out.exists()


def test_lora_argument_and_output_names(tmp_path):
    lora = parse_lora(f"{tmp_path}/style.safetensors:0.6")
    assert (lora.path, lora.weight) == (str(tmp_path / "style.safetensors"), 0.6)
    assert parse_lora(f"{tmp_path}/style.safetensors").weight == 1.0
    assert [p.name for p in output_paths(str(tmp_path / "x.png"), 3)] == [
        "x-1.png",
        "x-2.png",
        "x-3.png",
    ]
    with pytest.raises(InputError, match="does not exist"):
        output_paths(str(tmp_path / "missing" / "x.png"), 1)


def test_settings_not_given_are_left_to_the_model():
    import argparse

    from engine.cli.generate import add_arguments, build_request

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    left = build_request(parser.parse_args(["a cat", "--seed", "1", "--skip-t5"]))
    assert left.extras == {"model_defaults": ["steps", "guidance_scale", "sampler"]}
    # unset settings come from the model's own defaults (here the built-in default model)
    from engine.api import Mode
    from engine.cli.generate import model_defaults

    expected = model_defaults("", Mode.TXT2IMG, None)
    assert (left.steps, left.guidance_scale, left.sampler) == (
        expected["steps"],
        expected["guidance_scale"],
        expected["sampler"],
    )
    assert left.runtime.skip_t5 and left.runtime.offload.value == "auto"
    mine = build_request(parser.parse_args(["a cat", "--steps", "8", "--offload", "model"]))
    assert mine.extras == {"model_defaults": ["guidance_scale", "sampler"]}
    assert mine.steps == 8 and mine.runtime.offload.value == "model"
