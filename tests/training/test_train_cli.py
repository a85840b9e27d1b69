"""`easel train`: a run from the command line, exit codes, settings, Ctrl-C and --resume."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from gan_vae_tiny import write_pictures

from engine.cli import main
from engine.cli.train import format_progress, parse_settings
from engine.errors import InputError
from tests.helpers.signals import sigint_reaches_child

ROOT = Path(__file__).resolve().parents[2]
TINY_VAE = ["--set", "width=8", "--set", "latent_dim=4"]


def train_args(data, out, *extra) -> list[str]:
    return [
        "train", "--family", "vae", "--data", str(data), "--out", str(out), "--resolution", "16",
        "--batch", "4", "--threads", "1", *TINY_VAE, *extra,
    ]  # fmt: skip


def test_train_then_resume_from_the_command_line(tmp_path, capsys):
    data = write_pictures(tmp_path / "pics", count=4)
    (data / "broken.jpg").write_bytes(b"nope")
    out = tmp_path / "model"
    assert main(train_args(data, out, "--steps", "3")) == 0
    printed = capsys.readouterr()
    assert "Trained vae for 3 steps" in printed.out and str(out) in printed.out
    assert "Skipped 1 unreadable file(s): broken.jpg" in printed.out
    assert "step 3/3" in printed.err and "img/s" in printed.err
    assert json.loads((out / "config.json").read_text())["latent_dim"] == 4
    assert main(train_args(data, out, "--steps", "5", "--resume")) == 0
    assert json.loads((out / "checkpoint" / "state.json").read_text())["step"] == 5


def test_bad_input_exits_with_code_2_and_one_message(tmp_path, capsys):
    assert main(train_args(tmp_path / "missing", tmp_path / "out", "--steps", "2")) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "Traceback" not in err
    assert main(train_args(tmp_path, tmp_path / "out", "--steps", "0")) == 2
    assert "at least 1 step" in capsys.readouterr().err


def test_settings_and_progress_formatting():
    assert parse_settings(["beta=8", "latent=spatial", 'classes=["a"]']) == {
        "beta": 8,
        "latent": "spatial",
        "classes": ["a"],
    }
    with pytest.raises(InputError, match="KEY=VALUE"):
        parse_settings(["beta"])
    line = format_progress(5, 10, {"loss": 0.5, "images_per_s": 12.0, "seconds_left": 75})
    assert line == "step 5/10  loss 0.5000  12.0 img/s  1m15s left"


def test_ctrl_c_cancels_saves_a_checkpoint_and_exits_130(tmp_path):
    data = write_pictures(tmp_path / "pics", count=4)
    out = tmp_path / "model"
    process = subprocess.Popen(
        [sys.executable, "-m", "desktop.cli", *train_args(data, out, "--steps", "1000000")],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=sigint_reaches_child,
    )
    try:
        first_line = process.stderr.readline()  # the first progress line: training is running
        assert first_line.startswith("step "), first_line
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=90)
    finally:
        if process.poll() is None:
            process.kill()  # never leave a million-step run behind
    assert process.returncode == 130, err
    assert "continue with --resume" in err
    assert json.loads((out / "checkpoint" / "state.json").read_text())["step"] >= 1


def test_easel_train_on_the_built_in_emoji_renders_them_first(qapp, tmp_path, capsys):
    """(`qapp`: the test process already has its QApplication; the command makes its own
    QGuiApplication only when there is none.)"""
    from desktop.cli import main as easel

    assert easel(train_args("builtin:emoji", tmp_path / "emoji-vae", "--steps", "1")) == 0
    printed = capsys.readouterr()
    assert "Rendering the built-in emoji set: 3174/3174" in printed.err
    assert "Trained vae for 1 steps" in printed.out
