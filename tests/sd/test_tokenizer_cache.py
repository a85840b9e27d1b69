"""The shared CLIP tokenizer cache: built once per distinct files, used by every load."""

from __future__ import annotations

import shutil

import torch

from engine.api import RuntimeOptions
from engine.library.resolve import resolve_model
from engine.paths import resource
from engine.sd import tokenizers
from engine.sd.loading import load_base_pipeline

RUNTIME = RuntimeOptions(device="cpu", precision="fp32", cpu_threads=1)


def test_identical_tokenizer_files_share_one_instance_and_different_ones_do_not(tmp_path):
    bundled = tokenizers.bundled("clip")
    copy = tmp_path / "copy"
    shutil.copytree(resource("tokenizers", "clip"), copy)
    assert tokenizers.clip_tokenizer(copy) is bundled

    changed = tmp_path / "changed"
    shutil.copytree(copy, changed)
    config = (changed / "tokenizer_config.json").read_text(encoding="utf-8")
    (changed / "tokenizer_config.json").write_text(config.replace("77", "64"), encoding="utf-8")
    other = tokenizers.clip_tokenizer(changed)
    assert other is not bundled
    assert other.model_max_length == 64
    assert bundled.model_max_length == 77  # the shared one was not touched


def test_a_diffusers_folder_loads_with_the_prefetched_tokenizer(tiny_models):
    folder = tiny_models["sd1"]
    assert tokenizers.prefetch(folder) == 1
    cached = tokenizers.clip_tokenizer(folder / "tokenizer")
    pipe = load_base_pipeline(
        resolve_model(str(folder)), torch.device("cpu"), torch.float32, RUNTIME
    )
    assert pipe.tokenizer is cached
    ids = pipe.tokenizer("a photo of a cat").input_ids
    assert ids == [49406, 320, 1125, 539, 320, 2368, 49407]


def test_prefetch_of_an_sdxl_folder_builds_both_tokenizers(tiny_models):
    assert tokenizers.prefetch(tiny_models["sdxl"]) == 2


def test_prefetch_never_raises_on_bad_input(tmp_path):
    broken = tmp_path / "broken"
    (broken / "tokenizer").mkdir(parents=True)
    (broken / "model_index.json").write_text('{"tokenizer": ["transformers", "CLIPTokenizer"]}')
    (broken / "tokenizer" / "vocab.json").write_text("{not json")
    assert tokenizers.prefetch(broken) == 0
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 10)
    assert tokenizers.prefetch(tmp_path / "junk.safetensors") == 0
    assert tokenizers.prefetch(tmp_path / "missing") == 0
    assert tokenizers.prefetch(tmp_path / "picture.png") == 0
