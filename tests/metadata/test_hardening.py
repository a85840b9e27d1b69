"""Metadata from hostile files: bounded in time, memory and size, and one clear message.

Each case is a row in docs/reliability.md (section Metadata)."""

from __future__ import annotations

import time
import tracemalloc
import zlib

import pytest

from desktop.images import read_generation_settings
from engine.errors import EaselError, InputError
from engine.metadata import read_generation_metadata, read_image_settings
from engine.metadata.chunks import MAX_CHUNK_CHARS
from engine.metadata.common import MAX_PROMPT_CHARS
from tests.metadata import pngs

A1111 = "a cat\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 5, Size: 512x512"


def _write(tmp_path, name: str, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_a_million_nested_brackets_in_the_easel_chunk_is_refused_not_a_recursion_error(tmp_path):
    path = _write(tmp_path, "deep.png", pngs.png(pngs.text("easel", "[" * 1_000_000)))
    started = time.perf_counter()
    with pytest.raises(InputError, match="nested deeper"):
        read_image_settings(path)
    assert time.perf_counter() - started < 2.0
    assert read_generation_metadata(path) is None
    assert read_generation_settings(path) is None  # the desktop drop: no traceback, no settings


def test_deep_json_beside_a_good_chunk_still_gives_the_good_one(tmp_path):
    data = pngs.png(pngs.text("easel", '{"a": ' * 100_000), pngs.text("parameters", A1111))
    found = read_image_settings(_write(tmp_path, "both.png", data))
    assert found.source == "AUTOMATIC1111" and found.request.seed == 5
    assert any("nested deeper" in note for note in found.notes)


@pytest.mark.parametrize(
    "chunk", ['"\\' * 1_000_000, '{"a": [' * 60_000, '["' + "a" * 3_000_000, "[1," * 1_000_000]
)
def test_pathological_json_text_is_refused_quickly(tmp_path, chunk):
    path = _write(tmp_path, "bad.png", pngs.png(pngs.text("easel", chunk)))
    started = time.perf_counter()
    with pytest.raises(InputError):
        read_image_settings(path)
    assert time.perf_counter() - started < 3.0


def test_a_900_megapixel_png_gives_its_settings_without_decoding_a_pixel(tmp_path):
    data = pngs.png(pngs.text("parameters", A1111), width=30_000, height=30_000, color_type=6)
    path = _write(tmp_path, "huge.png", data)
    tracemalloc.start()
    try:
        found = read_image_settings(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert found.request.prompt == "a cat" and found.request.seed == 5
    assert peak < 5_000_000  # a decoded 900 MP RGBA image would be 3.6 GB
    # no text chunk: stealth metadata would need the pixels, which are refused at this size
    bare = _write(tmp_path, "bare.png", pngs.png(width=30_000, height=30_000, color_type=6))
    assert read_image_settings(bare) is None


def test_a_20_mb_parameters_chunk_is_skipped_with_a_message(tmp_path):
    prompt = "x" * (20 * 1024 * 1024)
    path = _write(tmp_path, "big.png", pngs.png(pngs.text("parameters", prompt + A1111[5:])))
    with pytest.raises(InputError, match="larger than Easel reads"):
        read_image_settings(path)


def test_a_long_prompt_under_the_chunk_limit_is_cut_and_said_so(tmp_path):
    prompt = "y" * (MAX_CHUNK_CHARS // 2)
    path = _write(tmp_path, "long.png", pngs.png(pngs.text("parameters", prompt + A1111[5:])))
    found = read_image_settings(path)
    assert found.request.prompt == "y" * MAX_PROMPT_CHARS
    assert any("Easel kept the first" in note for note in found.notes)


def test_a_compressed_text_bomb_stops_at_the_limit(tmp_path):
    packer = zlib.compressobj(9)
    block = b"a" * (1024 * 1024)
    bomb = b"".join(packer.compress(block) for _ in range(256)) + packer.flush()  # 256 MB
    assert len(bomb) < 1_000_000
    path = _write(tmp_path, "bomb.png", pngs.png(pngs.ztxt("parameters", bomb)))
    tracemalloc.start()
    try:
        with pytest.raises(InputError, match="unreadable text chunk"):
            read_image_settings(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3 * MAX_CHUNK_CHARS


def test_damaged_and_truncated_chunks_are_skipped(tmp_path):
    good = pngs.png(pngs.text("parameters", A1111))
    damaged = bytearray(good)
    damaged[good.index(b"tEXt") + 10] ^= 0xFF  # the checksum no longer matches
    with pytest.raises(InputError, match="checksum"):
        read_image_settings(_write(tmp_path, "crc.png", bytes(damaged)))
    cut = good[: good.index(b"tEXt") + 20]
    with pytest.raises(InputError, match="truncated"):
        read_image_settings(_write(tmp_path, "cut.png", cut))


def test_a_missing_file_says_so():
    with pytest.raises(EaselError, match="Cannot read"):
        read_image_settings("/no/such/picture.png")
