"""Property-based: the safetensors header reader takes random, truncated, huge-claiming and
wrongly typed headers and answers BrokenFile (its documented error) or a header, nothing else,
quickly and with bounded memory."""

from __future__ import annotations

import json
import struct
import tracemalloc

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.library.header import MAX_HEADER_BYTES, BrokenFile, read_header

SETTINGS = settings(
    max_examples=200, deadline=1000, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(["dtype", "shape", "data_offsets", "__metadata__", "w"]),
                      inner, max_size=4),
    max_leaves=30,
)  # fmt: skip
GOOD = {"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
        "__metadata__": {"format": "pt"}}  # fmt: skip


def _file(tmp_path_factory, header: bytes, *, claimed: int | None = None, body: bytes = b""):
    path = tmp_path_factory.mktemp("st") / "m.safetensors"
    length = len(header) if claimed is None else claimed
    path.write_bytes(struct.pack("<Q", length) + header + body)
    return path


def _read(path, memory_limit: int = 10_000_000):
    tracemalloc.start()
    try:
        header = read_header(path)
        header.shapes(), header.tensors, header.names()
    except BrokenFile as exc:
        assert str(exc)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < memory_limit


@SETTINGS
@given(st.dictionaries(st.text(max_size=6), VALUES, max_size=5))
def test_wrongly_typed_headers(tmp_path_factory, header):
    _read(_file(tmp_path_factory, json.dumps(header).encode(), body=b"\0" * 64))


@SETTINGS
@given(st.integers(min_value=0, max_value=200), st.binary(max_size=40))
def test_truncated_and_spliced_headers(tmp_path_factory, cut, noise):
    raw = json.dumps(GOOD).encode()
    _read(_file(tmp_path_factory, raw[:cut] + noise, body=b"\0" * 16))
    _read(_file(tmp_path_factory, raw, claimed=len(raw) + len(noise), body=noise))


@SETTINGS
@given(st.integers(min_value=0, max_value=2**64 - 1), st.binary(max_size=64))
def test_any_claimed_length_and_random_bytes(tmp_path_factory, claimed, data):
    path = _file(tmp_path_factory, data, claimed=claimed)
    _read(path)
    if claimed > MAX_HEADER_BYTES:
        try:
            read_header(path)
        except BrokenFile as exc:
            assert "more than any safetensors file has" in str(exc)


@SETTINGS
@given(st.binary(max_size=16))
def test_files_shorter_than_the_length_prefix(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("st") / "short.safetensors"
    path.write_bytes(data)
    _read(path)


def test_a_million_nested_brackets_is_broken_not_a_recursion_error(tmp_path_factory):
    # the reader holds the header it read (capped at MAX_HEADER_BYTES) and little more
    _read(_file(tmp_path_factory, b"[" * 1_000_000), memory_limit=30_000_000)
