"""`easel generate` with the built-in model and bad or unusable inputs, as a new user types it:
a real process; every case ends in one message and its documented exit code, no traceback, and
what the PNG says is what ran."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from PIL import Image

from engine.metadata import read_png_text

REPO = Path(__file__).resolve().parents[1]
EASEL = [sys.executable, "-c", "import sys; from engine.cli import main; sys.exit(main())"]


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "EASEL_DATA_DIR": str(tmp_path / "data")}
    return subprocess.run(
        [*EASEL, "generate", *args, "--threads", "1", "--quiet"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def png_claiming(path: Path, width: int, height: int) -> Path:
    """A tiny PNG whose header claims `width` x `height` (a decompression bomb's header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    data = zlib.compress(b"\0" * 4096)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data)
    path.write_bytes(png + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inputs")
    (folder / "fake.png").write_text("this is a text file, not a picture")
    png_claiming(folder / "huge.png", 30000, 30000)
    png_claiming(folder / "big.png", 9000, 9000)  # under Pillow's own limit: our check
    Image.new("RGB", (64, 64), "red").save(folder / "good.png")
    Image.new("L", (32, 32), 255).save(folder / "small-mask.png")
    (folder / "some.pt").write_bytes(b"not a lora")
    return folder


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--init", "fake.png", "--strength", "0.5"], 2, "'fake.png' is not a picture"),
        (["--init", "huge.png"], 2, "'huge.png' is 900 MP; Easel opens pictures up to 64 MP"),
        (["--init", "big.png"], 2, "9000x9000 (81 MP); Easel opens pictures up to 64 MP"),
        (["--init", "missing.png"], 2, "does not exist"),
        (["--init", "good.png", "--mask", "small-mask.png"], 2, "mask is 32x32"),
        (["--lora", "some.pt:1.0"], 2, "emoji-ldm cannot use LoRAs"),
        (["--steps", "0"], 2, "Steps must be between 1"),
        (["--model", "nowhere/model.safetensors"], 3, "Model not found"),
        (["-o", "picture.jpg"], 2, "must be a .png file"),
    ],
)
def test_bad_input_is_one_message_and_its_exit_code(tmp_path, inputs, args, code, message):
    args = [str(inputs / a) if (inputs / a).exists() else a for a in args]
    done = run(tmp_path, "x", "-o", str(tmp_path / "out.png"), *args)
    assert done.returncode == code, done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr and "Unexpected error" not in done.stderr
    assert not (tmp_path / "out.png").exists()


def test_builtin_img2img_and_its_metadata_say_what_ran(tmp_path, inputs):
    out = tmp_path / "out.png"
    done = run(
        tmp_path, "a red apple", "--init", str(inputs / "good.png"), "--strength", "0.5",
        "--steps", "4", "--seed", "5", "-o", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    text = read_png_text(out)["parameters"]
    assert "Denoising strength: 0.5" in text and "Sampler: DDIM" in text
    assert "Model: emoji-ldm" in text and "Model hash: " in text


def test_builtin_txt2img_uses_the_model_size_and_notes_a_size_it_cannot_make(tmp_path):
    out = tmp_path / "out.png"
    done = run(tmp_path, "a red apple", "--steps", "3", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert "note:" not in done.stderr  # its own size and sampler, a prompt it knows: nothing to say
    assert Image.open(out).size == (64, 64)
    done = run(tmp_path, "a red apple", "--steps", "3", "--width", "512", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert "note: emoji-ldm makes 64x64 pictures" in done.stderr
    assert "Size: 64x64" in read_png_text(out)["parameters"]


def test_concept_strength_from_the_command_line_is_used_and_range_checked(tmp_path):
    out = tmp_path / "out.png"
    done = run(tmp_path, "octopus", "--steps", "3", "--concept-strength", "0", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert "leaned on" not in done.stderr  # strength 0: the prompt as typed, nothing to explain
    done = run(tmp_path, "octopus", "--steps", "3", "-o", str(out))
    # the built-in is steered to the one nearest caption it knows, and says which
    assert "it leaned on the nearest thing it knows (squid)" in done.stderr
    done = run(tmp_path, "octopus", "--concept-strength", "1.5", "-o", str(out))
    assert done.returncode != 0 and "between 0" in done.stderr


def test_autoguidance_from_the_command_line_is_recorded_and_range_checked(tmp_path):
    out = tmp_path / "out.png"
    done = run(tmp_path, "a red apple", "--steps", "3", "--autoguidance", "1.5", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert json.loads(read_png_text(out)["easel"])["autoguidance"] == 1.5
    done = run(tmp_path, "a red apple", "--steps", "3", "--autoguidance", "1", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert "autoguidance" not in json.loads(read_png_text(out)["easel"])  # 1 is off: not claimed
    done = run(tmp_path, "a red apple", "--autoguidance", "7", "-o", str(out))
    assert done.returncode != 0 and "between 1" in done.stderr
