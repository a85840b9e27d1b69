"""Other readers read Easel's PNGs: sd-parsers and SD Prompt Reader get every field, model and
hash included, from real generations (a tiny SD pipeline with a LoRA, and a built-in model),
batches included; and Easel reads its own files back to the request that ran."""

from __future__ import annotations

import hashlib

import pytest
import torch
from sd_parsers import ParserManager
from sd_prompt_reader.image_data_reader import ImageDataReader

from engine.api import GenerationRequest, LoraRef, RuntimeOptions
from engine.events import Result
from engine.history import HistoryStore
from engine.library.hashing import folder_hash
from engine.metadata import parse_a1111, read_image_settings, read_png_text
from engine.paths import resource

RUNTIME = RuntimeOptions(device="cpu", precision="fp32", cpu_threads=1)
BIG_SEED = 2**40 + 7  # past 32 bits: kept whole through request, metadata and history


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    from tests.helpers.tiny_sd import build_lora, build_sd1

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("interop")
    model = build_sd1(root / "tiny-sd1")
    return model, build_lora(model, root / "loras" / "tiny-lora.safetensors")


def _generate_into_history(engine, request) -> list:
    result = engine.run(request, timeout=300)
    assert isinstance(result, Result), getattr(result, "message", result)
    entries = HistoryStore().add_batch(result.images, result.metadata)
    for index, entry in enumerate(entries):  # the gallery's own record keeps the seed whole
        assert entry.generation_request().seed == request.seed + index
    return [entry.image_path for entry in entries]


def _check_readers(path, *, prompt, negative, sampler, schedule, seed, steps, cfg, size, model,
                   model_hash, batch):  # fmt: skip
    info = ParserManager().parse(path)
    assert info is not None and info.generator.name == "AUTOMATIC1111"
    (used,) = info.samplers
    assert used.name == sampler and used.parameters["scheduler"] == schedule
    assert (used.parameters["seed"], used.parameters["steps"]) == (str(seed), str(steps))
    assert float(used.parameters["cfg_scale"]) == cfg
    assert (used.model.name, used.model.hash) == (model, model_hash)
    assert [p.value for p in used.prompts] == ([prompt] if prompt else [])
    assert [p.value for p in used.negative_prompts] == ([negative] if negative else [])
    assert info.metadata["Size"] == f"{size[0]}x{size[1]}"
    assert (info.metadata["Batch size"], info.metadata["Batch pos"]) == tuple(map(str, batch))
    reader = ImageDataReader(str(path))
    assert reader.tool == "A1111 webUI" and reader.positive == prompt
    assert reader.negative == negative
    assert reader.parameter == {
        "model": model, "sampler": sampler, "seed": str(seed), "cfg": f"{cfg:g}",
        "steps": str(steps), "size": f"{size[0]}x{size[1]}",
    }  # fmt: skip


def test_sd_batch_with_a_lora_reads_the_same_in_every_reader(engine, tiny_sd):
    model, lora = tiny_sd
    request = GenerationRequest(
        prompt="a red apple", negative_prompt="blurry", model=str(model), seed=BIG_SEED,
        steps=3, guidance_scale=6.5, sampler="DPM++ 2M Karras", width=64, height=48,
        batch_size=2, loras=(LoraRef(str(lora), 0.8),), runtime=RUNTIME,
    )  # fmt: skip
    paths = _generate_into_history(engine, request)
    model_hash = folder_hash(model)[:10]
    lora_hashes = f"tiny-lora: {_sha256(lora)[:12]}"
    for index, path in enumerate(paths):
        _check_readers(
            path, prompt="a red apple <lora:tiny-lora:0.8>", negative="blurry",
            sampler="DPM++ 2M", schedule="Karras", seed=BIG_SEED + index, steps=3, cfg=6.5,
            size=(64, 48), model="tiny-sd1", model_hash=model_hash, batch=(2, index),
        )  # fmt: skip
        # A1111 quotes the value; sd-parsers splits at every colon and drops it (for A1111's
        # own files too), so A1111's reading of the text is checked through Easel's A1111 reader
        text = read_png_text(path)["parameters"]
        assert f'Lora hashes: "{lora_hashes}"' in text
        from_text = parse_a1111(text)
        assert from_text.request.extras["lora_hashes"] == {"tiny-lora": _sha256(lora)[:12]}
        assert from_text.request.loras == (LoraRef("tiny-lora", 0.8),)
        back = read_image_settings(path)
        assert back.source == "Easel"
        assert back.request == request.replace(seed=BIG_SEED + index, batch_size=1)


def test_builtin_model_images_name_the_model_and_its_weights_hash(engine):
    request = GenerationRequest(
        prompt="a red apple", model="builtin:emoji-ldm", seed=BIG_SEED, batch_size=2,
        steps=4, sampler="DDIM", guidance_scale=3.0, width=64, height=64, runtime=RUNTIME,
    )  # fmt: skip
    paths = _generate_into_history(engine, request)
    weights_hash = _sha256(resource("models", "emoji-ldm", "model.safetensors"))[:10]
    for index, path in enumerate(paths):
        text = read_png_text(path)["parameters"]
        assert f"Model hash: {weights_hash}, Model: emoji-ldm" in text
        _check_readers(
            path, prompt="a red apple", negative="", sampler="DDIM", schedule="Automatic",
            seed=BIG_SEED + index, steps=4, cfg=3.0, size=(64, 64), model="emoji-ldm",
            model_hash=weights_hash, batch=(2, index),
        )  # fmt: skip
        assert read_image_settings(path).request.seed == BIG_SEED + index


def test_a_gan_image_claims_no_sampler_steps_or_cfg_it_did_not_use(engine):
    request = GenerationRequest(model="builtin:emoji-dcgan", seed=BIG_SEED, runtime=RUNTIME)
    (path,) = _generate_into_history(engine, request)
    weights_hash = _sha256(resource("models", "emoji-dcgan", "model.safetensors"))[:10]
    text = read_png_text(path)["parameters"]
    assert f"Model hash: {weights_hash}, Model: emoji-dcgan" in text
    assert "Sampler:" not in text and "Steps:" not in text and "CFG scale:" not in text
    assert read_image_settings(path).request.seed == BIG_SEED


def Image_size(path) -> tuple[int, int]:  # noqa: N802
    from PIL import Image

    with Image.open(path) as image:
        return image.size
