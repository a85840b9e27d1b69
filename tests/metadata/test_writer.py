"""The A1111 text as A1111 1.10 writes it, and a round trip through each writer and reader."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import piexif
import piexif.helper
import pytest
from PIL import Image
from sd_parsers import ParserManager

from engine.api import SAMPLERS, GenerationRequest, LoraRef
from engine.metadata import (
    a1111_parameters,
    parse_a1111,
    read_image_settings,
    read_png_text,
    save_png_with_metadata,
)
from engine.paths import resource

REPO = Path(__file__).resolve().parents[2]


def _metadata(**changes) -> dict:
    request = GenerationRequest(
        prompt="a lighthouse", negative_prompt="fog", model="/models/dreamy.safetensors",
        seed=7, steps=20, guidance_scale=6.0, sampler="Euler a", width=512, height=512,
    )  # fmt: skip
    data = request.replace(**changes).to_dict()
    data.update(model_name="dreamy", model_hash="0123456789")
    return data


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_sampler_round_trips_through_the_a1111_text(sampler):
    text = a1111_parameters(_metadata(sampler=sampler))
    assert "Schedule type: " in text  # A1111 1.9+ splits sampler and schedule
    assert "Karras" not in text.split("Sampler: ")[1].split(",")[0]
    back = parse_a1111(text)
    assert back.request.sampler == sampler and not back.notes


def test_model_names_lose_commas_and_colons_as_in_a1111_so_readers_split_right(tmp_path):
    data = _metadata()
    data["model_name"] = "dreamy, v2: final"
    path = save_png_with_metadata(Image.new("RGB", (8, 8)), tmp_path / "m.png", data)
    text = read_png_text(path)["parameters"]
    assert "Model hash: 0123456789, Model: dreamy v2 final, Version" in text
    info = ParserManager().parse(path)
    assert info.samplers[0].model.name == "dreamy v2 final"
    assert info.samplers[0].model.hash == "0123456789"


def test_typed_lora_tags_stay_in_place_and_panel_loras_are_appended():
    data = _metadata(
        prompt="a <lora:ink:0.5> lighthouse",
        loras=(LoraRef("/l/ink.safetensors", 0.5), LoraRef("/l/film grain.safetensors", 1.2)),
    )
    first_line = a1111_parameters(data).split("\n")[0]
    assert first_line == "a <lora:ink:0.5> lighthouse <lora:film grain:1.2>"
    back = parse_a1111(a1111_parameters(data))
    assert back.request.prompt == first_line  # the picked-up prompt keeps its tags in place
    assert back.request.loras == (LoraRef("ink", 0.5), LoraRef("film grain", 1.2))


def test_batch_fields_for_sd_and_native_metadata():
    sd = {**_metadata(), "batch_index": 2, "batch_total": 4}
    assert "Batch size: 4, Batch pos: 2" in a1111_parameters(sd)
    native = {**_metadata(batch_size=3), "image_index": 1}
    assert "Batch size: 3, Batch pos: 1" in a1111_parameters(native)
    assert "Batch" not in a1111_parameters(_metadata())  # a single image has none, as in A1111


def test_a_builtin_model_is_named_and_hashed_from_its_weights():
    data = _metadata(model="builtin:emoji-ldm")
    del data["model_name"], data["model_hash"]
    weights = resource("models", "emoji-ldm", "model.safetensors")
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()[:10]
    assert f"Model hash: {digest}, Model: emoji-ldm" in a1111_parameters(data)


def test_easel_chunk_round_trip_keeps_64_bit_seeds(tmp_path):
    data = _metadata(seed=2**64 - 1)
    path = save_png_with_metadata(Image.new("RGB", (8, 8)), tmp_path / "s.png", data)
    back = read_image_settings(path)
    assert back.source == "Easel" and back.request.seed == 2**64 - 1
    assert back.request == GenerationRequest.from_dict(data)


def test_a1111_jpeg_and_webp_exif_round_trip(tmp_path):
    text = a1111_parameters(_metadata(seed=123456))
    exif = piexif.dump(
        {"Exif": {piexif.ExifIFD.UserComment: piexif.helper.UserComment.dump(text, "unicode")}}
    )  # how A1111 saves JPEG and WebP
    for suffix, kind in ((".jpg", "JPEG"), (".webp", "WEBP")):
        path = tmp_path / f"a{suffix}"
        Image.new("RGB", (16, 16), "red").save(path, format=kind, exif=exif)
        back = read_image_settings(path)
        assert back.source == "AUTOMATIC1111", suffix
        assert (back.request.prompt, back.request.seed) == ("a lighthouse", 123456)


def _stealth_png(path: Path, text: str) -> None:
    """What the A1111 stealth-pnginfo extension writes: header, bit length, gzip payload in
    the alpha channel's lowest bits, column by column."""
    payload = gzip.compress(text.encode("utf-8"))
    data = b"stealth_pngcomp" + (len(payload) * 8).to_bytes(4, "big") + payload
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))
    width, height = 64, 64
    alpha = np.full(width * height, 255, dtype=np.uint8)
    alpha[: bits.size] = 254 | bits
    pixels = np.zeros((height, width, 4), dtype=np.uint8)
    pixels[..., 3] = alpha.reshape(width, height).T
    Image.fromarray(pixels, "RGBA").save(path)


def test_stealth_alpha_round_trip(tmp_path):
    _stealth_png(tmp_path / "s.png", a1111_parameters(_metadata(seed=99)))
    back = read_image_settings(tmp_path / "s.png")
    assert back.source == "AUTOMATIC1111" and back.request.seed == 99


def test_fooocus_json_is_never_read_as_a1111_text():
    fooocus = json.dumps({"prompt": "koi", "seed": "5", "steps": 30, "sampler": "euler"})
    assert parse_a1111(fooocus) is None
    loose = "note: one, tag: two, more: three"  # three key: value fragments, not A1111
    assert parse_a1111(loose) is None


def test_files_get_the_umasks_mode_and_replaced_files_keep_theirs(tmp_path):
    script = (
        "import os, sys; os.umask(0o027)\n"
        "from PIL import Image\n"
        "from engine.metadata import save_png_with_metadata\n"
        "save_png_with_metadata(Image.new('RGB', (4, 4)), sys.argv[1], {'prompt': 'x'})\n"
    )
    target = tmp_path / "shared.png"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-c", script, str(target)], check=True, env=env, cwd=REPO)
    assert target.stat().st_mode & 0o777 == 0o640  # not mkstemp's 0600
    target.chmod(0o604)
    save_png_with_metadata(Image.new("RGB", (4, 4)), target, {"prompt": "y"})
    assert target.stat().st_mode & 0o777 == 0o604


def test_a1111_text_of_a_png_bytes_equals_pillows_reading(tmp_path):
    path = save_png_with_metadata(Image.new("RGB", (8, 8)), tmp_path / "p.png", _metadata())
    with Image.open(io.BytesIO(path.read_bytes())) as image:
        assert image.info["parameters"] == read_png_text(path)["parameters"]
