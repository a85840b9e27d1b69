"""PNG metadata: Easel's and A1111's chunks written, and other apps' metadata read back.

More in tests/metadata/ (the sd-parsers sample set, interop with other readers, hardening)."""

from __future__ import annotations

import json

from PIL import Image, PngImagePlugin

from engine.api import GenerationRequest, LoraRef
from engine.metadata import (
    a1111_parameters,
    read_generation_metadata,
    read_png_text,
    save_png_with_metadata,
)


def _png_with_text(path, **chunks):
    info = PngImagePlugin.PngInfo()
    for key, value in chunks.items():
        info.add_text(key, value)
    Image.new("RGB", (16, 16), "white").save(path, pnginfo=info)
    return path


def _metadata(**changes) -> dict:
    request = GenerationRequest(
        prompt="a (red:1.2) apple, studio light",
        negative_prompt="blurry, lowres",
        model="/models/dreamy-v1.safetensors",
        seed=1234,
        steps=25,
        guidance_scale=7.5,
        sampler="DPM++ 2M Karras",
        width=640,
        height=512,
        **changes,
    )
    data = request.to_dict()
    data.update(model_name="dreamy-v1", model_hash="0123456789", timings={"total_s": 1.5})
    return data


def test_easel_round_trip_and_a1111_text(tmp_path):
    metadata = _metadata(loras=(LoraRef("/loras/ink.safetensors", 0.7),), clip_skip=2)
    path = save_png_with_metadata(Image.new("RGB", (8, 8)), tmp_path / "out.png", metadata)
    assert read_generation_metadata(path) == GenerationRequest.from_dict(metadata)
    text = read_png_text(path)["parameters"]
    lines = text.split("\n")
    assert lines[0] == "a (red:1.2) apple, studio light <lora:ink:0.7>"
    assert lines[1] == "Negative prompt: blurry, lowres"
    assert lines[2] == (
        "Steps: 25, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7.5, Seed: 1234, "
        "Size: 640x512, Model hash: 0123456789, Model: dreamy-v1, Clip skip: 2, "
        "Version: Easel 0.1.0"
    )
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic write left no temp file


def test_our_a1111_text_reads_back_without_the_easel_chunk(tmp_path):
    metadata = _metadata(mode="img2img", init_image="/in.png", strength=0.4)
    text = a1111_parameters(metadata)
    assert "Denoising strength: 0.4" in text
    path = _png_with_text(tmp_path / "a.png", parameters=text)
    request = read_generation_metadata(path)
    assert (request.prompt, request.negative_prompt) == (
        "a (red:1.2) apple, studio light",
        "blurry, lowres",
    )
    assert (request.seed, request.steps, request.guidance_scale) == (1234, 25, 7.5)
    assert (request.sampler, request.width, request.height) == ("DPM++ 2M Karras", 640, 512)
    assert request.strength == 0.4 and request.model == "dreamy-v1"
    assert request.extras["model_hash"] == "0123456789"


def test_a1111_sample_with_schedule_type_quotes_and_lora_tags(tmp_path):
    text = (
        "masterpiece, (cat:1.3) on a sofa <lora:fluffy:0.6>\n"
        "second prompt line\n"
        "Negative prompt: ugly, (bad hands:1.2)\n"
        "Steps: 30, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6, Seed: 3735928559, "
        'Size: 515x768, Model hash: abcdef1234, Model: "sd, v1.5", Clip skip: 2, '
        'Lora hashes: "fluffy: 0123abcd", Version: v1.10.1'
    )
    request = read_generation_metadata(_png_with_text(tmp_path / "a1111.png", parameters=text))
    # the tag stays where it was typed (it never reaches the text encoder)
    assert request.prompt == (
        "masterpiece, (cat:1.3) on a sofa <lora:fluffy:0.6>\nsecond prompt line"
    )
    assert request.negative_prompt == "ugly, (bad hands:1.2)"
    assert request.sampler == "DPM++ 2M Karras"
    assert (request.steps, request.guidance_scale, request.seed) == (30, 6.0, 3735928559)
    assert (request.width, request.height) == (512, 768)  # rounded to a multiple of 8
    assert request.model == "sd, v1.5" and request.clip_skip == 2
    assert request.loras == (LoraRef("fluffy", 0.6),)
    assert request.extras["imported_from"] == "AUTOMATIC1111"
    assert request.extras["lora_hashes"] == {"fluffy": "0123abcd"}


def test_a1111_unknown_sampler_is_kept_in_extras(tmp_path):
    text = "a cat\nSteps: 20, Sampler: Heun, CFG scale: 7, Seed: 1, Size: 512x512"
    request = read_generation_metadata(_png_with_text(tmp_path / "h.png", parameters=text))
    assert request.sampler == "Euler a"  # the default
    assert request.extras["original_sampler"] == "Heun"


COMFY_API = {
    "3": {
        "class_type": "KSampler",
        "inputs": {
            "seed": 156680208700286,
            "steps": 20,
            "cfg": 8.0,
            "sampler_name": "dpmpp_2m",
            "scheduler": "karras",
            "denoise": 1.0,
            "model": ["10", 0],
            "positive": ["6", 0],
            "negative": ["7", 0],
            "latent_image": ["5", 0],
        },
    },
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "v1-5.safetensors"}},
    "10": {
        "class_type": "LoraLoader",
        "inputs": {
            "lora_name": "style.safetensors",
            "strength_model": 0.8,
            "strength_clip": 0.8,
            "model": ["4", 0],
            "clip": ["4", 1],
        },
    },
    "5": {
        "class_type": "EmptyLatentImage",
        "inputs": {"width": 512, "height": 768, "batch_size": 1},
    },
    "6": {
        "class_type": "CLIPTextEncode",
        "inputs": {"text": "a castle at dusk", "clip": ["10", 1]},
    },
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "text, watermark", "clip": ["10", 1]}},
    "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
}


def test_comfyui_api_graph(tmp_path):
    path = _png_with_text(tmp_path / "comfy.png", prompt=json.dumps(COMFY_API))
    request = read_generation_metadata(path)
    assert (request.prompt, request.negative_prompt) == ("a castle at dusk", "text, watermark")
    assert request.seed == 156680208700286  # 64-bit seeds are kept whole
    assert (request.steps, request.guidance_scale, request.sampler) == (20, 8.0, "DPM++ 2M Karras")
    assert (request.width, request.height, request.model) == (512, 768, "v1-5.safetensors")
    assert request.loras == (LoraRef("style.safetensors", 0.8),)


def test_comfyui_editor_workflow_only(tmp_path):
    workflow = {
        "nodes": [
            {
                "id": 3,
                "type": "KSampler",
                "inputs": [
                    {"name": "model", "link": 1},
                    {"name": "positive", "link": 4},
                    {"name": "negative", "link": 6},
                    {"name": "latent_image", "link": 2},
                ],
                "widgets_values": [42, "fixed", 12, 5.5, "euler_ancestral", "normal", 1.0],
            },
            {"id": 4, "type": "CheckpointLoaderSimple", "widgets_values": ["dream.safetensors"]},
            {"id": 5, "type": "EmptyLatentImage", "widgets_values": [768, 512, 1]},
            {"id": 6, "type": "CLIPTextEncode", "widgets_values": ["a fox in snow"]},
            {"id": 7, "type": "CLIPTextEncode", "widgets_values": ["blurry"]},
        ],
        "links": [
            [1, 4, 0, 3, 0, "MODEL"],
            [2, 5, 0, 3, 3, "LATENT"],
            [4, 6, 0, 3, 1, "CONDITIONING"],
            [6, 7, 0, 3, 2, "CONDITIONING"],
        ],
    }
    path = _png_with_text(tmp_path / "wf.png", workflow=json.dumps(workflow))
    request = read_generation_metadata(path)
    assert (request.prompt, request.negative_prompt) == ("a fox in snow", "blurry")
    assert (request.seed, request.steps, request.guidance_scale) == (42, 12, 5.5)
    assert (request.sampler, request.width, request.height) == ("Euler a", 768, 512)
    assert request.model == "dream.safetensors"


def test_invokeai_metadata(tmp_path):
    invoke = {
        "generation_mode": "sdxl_txt2img",
        "positive_prompt": "a lighthouse, oil painting",
        "negative_prompt": "photo",
        "width": 1024,
        "height": 1024,
        "seed": 99,
        "steps": 28,
        "cfg_scale": 6.5,
        "scheduler": "dpmpp_2m_k",
        "model": {"key": "abc", "hash": "blake3:00", "name": "juggernaut-xl", "base": "sdxl"},
        "loras": [{"model": {"name": "detail-xl", "key": "k"}, "weight": 0.5}],
    }
    path = _png_with_text(tmp_path / "invoke.png", invokeai_metadata=json.dumps(invoke))
    request = read_generation_metadata(path)
    assert request.prompt == "a lighthouse, oil painting" and request.negative_prompt == "photo"
    assert (request.seed, request.steps, request.guidance_scale) == (99, 28, 6.5)
    assert (request.sampler, request.width, request.model) == (
        "DPM++ 2M Karras",
        1024,
        "juggernaut-xl",
    )
    assert request.loras == (LoraRef("detail-xl", 0.5),)


def test_no_or_unreadable_metadata_gives_none(tmp_path):
    plain = tmp_path / "plain.png"
    Image.new("RGB", (4, 4)).save(plain)
    assert read_generation_metadata(plain) is None
    garbage = _png_with_text(tmp_path / "garbage.png", parameters="just a caption")
    assert read_generation_metadata(garbage) is None
    broken_json = _png_with_text(tmp_path / "bad.png", easel="{not json")
    assert read_generation_metadata(broken_json) is None
    text_file = tmp_path / "notes.png"
    text_file.write_text("not an image")
    assert read_generation_metadata(text_file) is None
    assert read_generation_metadata(tmp_path / "missing.png") is None


def test_any_family_metadata_is_written_even_when_it_is_not_a_valid_request(tmp_path):
    # a native GAN sample: 28x28 (not a multiple of 8), a sampler name SD does not have
    metadata = {"prompt": "", "model": "builtin:digits-gan", "seed": 3, "width": 28,
                "height": 28, "steps": 1, "sampler": "gan", "family": "dcgan"}  # fmt: skip
    path = save_png_with_metadata(Image.new("RGB", (28, 28)), tmp_path / "g.png", metadata)
    chunks = read_png_text(path)
    assert json.loads(chunks["easel"]) == metadata
    assert "Size: 28x28" in chunks["parameters"] and "Seed: 3" in chunks["parameters"]
    request = read_generation_metadata(path)  # falls back to the A1111 text: size rounded
    assert (request.width, request.height, request.seed) == (32, 32, 3)
