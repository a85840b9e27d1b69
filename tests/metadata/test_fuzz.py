"""Property-based: random, truncated, huge and wrongly typed metadata never raises anything
but EaselError, never hangs (each example has a deadline), and stays small in memory."""

from __future__ import annotations

import json
import string
import tracemalloc

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.errors import EaselError
from engine.metadata import (
    ImportedSettings,
    a1111_parameters,
    parse_a1111,
    parse_comfyui,
    parse_dream,
    parse_easel,
    parse_fooocus,
    parse_invokeai,
    parse_novelai,
    parse_sd_metadata,
    read_image_settings,
)
from tests.metadata import pngs

FAST = settings(
    max_examples=200, deadline=1000, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
FILES = settings(
    max_examples=100, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

KEYS = (
    "seed steps cfg text model inputs class_type positive_prompt image prompt width height "
    "sampler_name scheduler nodes links widgets_values loras Steps scale uc resolution type weight"
).split()
SCALARS = (
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True) | st.text(max_size=30) | st.sampled_from(["3", "x", "1e400"])
)  # fmt: skip
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), inner, max_size=6)
    ),
    max_leaves=40,
)
A1111_WORDS = st.sampled_from(
    ["Steps: 20", "Sampler: Euler a", "Schedule type: Karras", "Seed: 99999999999999999999999",
     "Size: 0x0", "Size: 99999999x8", "CFG scale: nan", 'Model: "a, b"', "Negative prompt:",
     "<lora:x:9e9>", "<lora:", '"', "\\", ", ", "\n", "Lora hashes: \"a: b, c\"", "Clip skip: -3",
     "Denoising strength: inf", "Steps: 10**9", "Batch pos: x"]
)  # fmt: skip
A1111_TEXT = st.lists(A1111_WORDS | st.text(max_size=12), max_size=30).map("".join)


def _only_easel_errors(parse, *args):
    try:
        result = parse(*args)
    except EaselError:
        return None
    assert result is None or isinstance(result, ImportedSettings)
    return result


@FAST
@given(A1111_TEXT)
def test_a1111_text(text):
    _only_easel_errors(parse_a1111, text)
    _only_easel_errors(parse_a1111, "x\nSteps: 1, " + text)


@FAST
@given(JSON, JSON)
def test_comfyui_graphs(prompt, workflow):
    _only_easel_errors(parse_comfyui, json.dumps(prompt), json.dumps(workflow))
    graph = {"1": {"class_type": "KSampler", "inputs": prompt},
             "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0]}}}  # fmt: skip
    _only_easel_errors(parse_comfyui, json.dumps(graph), None)
    nodes = {"nodes": [{"id": 1, "type": "KSampler", "widgets_values": workflow}], "links": prompt}
    _only_easel_errors(parse_comfyui, None, json.dumps(nodes))


@FAST
@given(JSON)
def test_json_readers_with_wrong_types(data):
    text = json.dumps(data)
    as_dict = data if isinstance(data, dict) else {"value": data}
    for parse in (parse_invokeai, parse_sd_metadata, parse_easel, parse_fooocus):
        _only_easel_errors(parse, text)
    _only_easel_errors(parse_invokeai, json.dumps({**as_dict, "positive_prompt": data}))
    _only_easel_errors(parse_sd_metadata, json.dumps({"image": as_dict}))
    _only_easel_errors(parse_fooocus, json.dumps({**as_dict, "metadata_scheme": "fooocus"}))
    _only_easel_errors(parse_easel, json.dumps({**as_dict, "type": "generate"}))
    chunks = {"Software": "NovelAI", "Comment": text, "Source": str(data)[:40]}
    _only_easel_errors(parse_novelai, chunks)


@FAST
@given(st.text(alphabet=string.printable, max_size=200))
def test_text_readers_with_random_text(text):
    for parse in (parse_a1111, parse_dream, parse_easel, parse_invokeai, parse_fooocus):
        _only_easel_errors(parse, text)
    _only_easel_errors(parse_dream, '"a [b]" -s ' + text)
    _only_easel_errors(parse_comfyui, text, text)


@FAST
@given(st.dictionaries(st.sampled_from(KEYS), SCALARS, max_size=12))
def test_the_writer_takes_any_metadata_dict(metadata):
    # any family's dict gets a line (no validation), and the line reads back or is refused
    text = a1111_parameters(metadata)
    assert text.endswith("Version: Easel 0.1.0")
    _only_easel_errors(parse_a1111, text)


GOOD = pngs.png(
    pngs.text("parameters", "a cat\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 5"),
    pngs.text("easel", json.dumps({"prompt": "a cat", "seed": 5})),
    pngs.itxt("prompt", json.dumps({"3": {"class_type": "KSampler", "inputs": {"seed": 1}}})),
)


@FILES
@given(st.integers(min_value=0, max_value=len(GOOD)), st.binary(max_size=64))
def test_truncated_and_spliced_png_files(tmp_path_factory, cut, noise):
    path = tmp_path_factory.mktemp("fuzz") / "f.png"
    for data in (GOOD[:cut], GOOD[:cut] + noise + GOOD[cut:], GOOD[:cut] + noise):
        path.write_bytes(data)
        _only_easel_errors(read_image_settings, path)


@FILES
@given(st.lists(st.tuples(st.sampled_from([b"tEXt", b"zTXt", b"iTXt", b"IHDR", b"IEND",
                                             b"IDAT", b"eXIf"]), st.binary(max_size=200)),
                max_size=8))  # fmt: skip
def test_random_chunks_in_a_png(tmp_path_factory, chunks):
    path = tmp_path_factory.mktemp("fuzz") / "c.png"
    path.write_bytes(pngs.png(*(pngs.chunk(kind, data) for kind, data in chunks)))
    tracemalloc.start()
    try:
        _only_easel_errors(read_image_settings, path)
        assert tracemalloc.get_traced_memory()[1] < 20_000_000
    finally:
        tracemalloc.stop()


@FILES
@given(st.binary(max_size=300), st.sampled_from([b"\xff\xd8", b"RIFF\0\0\0\0WEBP", b""]))
def test_random_jpeg_and_webp_bytes(tmp_path_factory, body, head):
    path = tmp_path_factory.mktemp("fuzz") / "j.jpg"
    path.write_bytes(head + body)
    _only_easel_errors(read_image_settings, path)
