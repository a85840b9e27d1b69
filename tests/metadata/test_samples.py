"""The sd-parsers sample set: every field sd-parsers' own tests expect, Easel reads too.

The expected values are copied from sd-parsers 0.6's tests (tests/resources/parsers/*); where
Easel cannot run a value as written (a 64-bit-plus sampler, a seed), the original is kept and
the note says what will differ. The same files are also read with sd-parsers itself, so the two
readers are compared field by field on every image.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sd_parsers import ParserManager
from sd_parsers.extractors import Eagerness

from engine.metadata import read_image_settings

SAMPLES = Path(__file__).parent / "samples"

DUCK = {
    "prompt": "photo of a duck",
    "negative_prompt": "monochrome",
    "steps": 15,
    "sampler": "UniPC",
    "guidance_scale": 5.0,
    "seed": 235284042,
    "width": 512,
    "height": 400,
    "model": "realistic_realisticVisionV20_v20",
}
WOMAN = (
    "professional full body photo of young woman, hyper long brunette hair, elegant hair, "
    "wearing a bikini top and asymmetric short skirt, curvy body, long legs, (imperfect skin), "
    "detailed skin, intense freckles, super long eye lashes, at night, outside, "
    "city background, 8k ultra detailed, realistic, high quality, film grain, low contrast"
)
NOVELAI_NEGATIVE = ", ".join(
    ["lowres, bad anatomy, bad hands, text, error, missing fingers, extra digit, fewer digits, "
     "cropped, worst quality, low quality, normal quality, jpeg artifacts, signature, "
     "watermark, username, blurry"] * 2
)  # fmt: skip

#: file -> (app, request fields, extras, fields that must be unknown)
EXPECTED = {
    "automatic1111_cropped.png": ("AUTOMATIC1111", DUCK, {"model_hash": "c0d1994c73"}, set()),
    "automatic1111_cropped.jpg": ("AUTOMATIC1111", DUCK, {"model_hash": "c0d1994c73"}, set()),
    "text_after_idat.png": ("AUTOMATIC1111", DUCK, {"model_hash": "c0d1994c73"}, set()),
    "automatic1111_stealth.png": (
        "AUTOMATIC1111",
        {"prompt": "a circle", "negative_prompt": "a square", "sampler": "Euler",
         "guidance_scale": 7.0, "seed": 2015833630, "steps": 20, "clip_skip": 2,
         "model": "realisticVisionV51_v51VAE", "width": 64, "height": 64},
        {"model_hash": "15012c538f"},
        set(),
    ),
    "fooocus1_cropped.png": (
        "Fooocus",
        {"prompt": "a smiling goldfish", "negative_prompt": "", "guidance_scale": 4.0,
         "steps": 30, "seed": 6952411511246973023, "model": "juggernautXL_v8Rundiffusion",
         "width": 768, "height": 1280, "clip_skip": 2},
        {"model_hash": "aeb7e9e689", "original_sampler": "dpmpp_2m_sde_gpu (karras)"},
        set(),
    ),
    "img2img_cropped.png": (
        "ComfyUI",
        {"prompt": "photograph of victorian woman with wings, sky clouds, meadow grass",
         "negative_prompt": "watermark, text", "seed": 280823642470253, "steps": 20,
         "guidance_scale": 8.0, "sampler": "DPM++ 2M", "strength": 0.8700000000000001,
         "model": "v1-5-pruned-emaonly.ckpt"},
        {"comfyui_sampler_node": "3"},
        {"width", "height"},  # the size is the loaded image's: unknown, not 512x512
    ),
    "night_evening_day_morning_cropped.png": (
        "ComfyUI",  # two samplers: the second pass (node 24) made the saved image
        {"seed": 1122440447966177, "steps": 14, "guidance_scale": 7.0, "sampler": "DPM++ 2M",
         "strength": 0.5, "model": "AbyssOrangeMix2_hard.safetensors", "clip_skip": 2,
         "width": 1088, "height": 1920,
         "prompt": "(best quality) beautiful (HDR:1.2) (realistic:1.2) landscape breathtaking "
         "amazing view nature scenery photograph forest mountains ocean daytime night evening "
         "morning, (sky:1.2)"},
        {"comfyui_sampler_node": "24"},
        set(),
    ),
    "invokeai_dream1.png": (
        "InvokeAI",
        {"prompt": WOMAN, "negative_prompt": "rendering, glowing eyes, skinny", "steps": 50,
         "guidance_scale": 5.0, "seed": 2980747362, "sampler": "LMS", "width": 512,
         "height": 768},
        {},
        {"model"},
    ),
    "invokeai_sdmeta1.png": (
        "InvokeAI",
        {"prompt": WOMAN, "negative_prompt": "rendering, glowing eyes, skinny", "steps": 50,
         "guidance_scale": 5.0, "seed": 2980747362, "sampler": "LMS", "width": 512,
         "height": 768, "model": "deliberateForInvoke_v08"},
        {"model_hash": "56d1442a0feefd64836a19ac8e3527ec71c884fc962e246ddf67b03e42921272"},
        set(),
    ),
    "invokeai_imeta1.png": (
        "InvokeAI",
        {"prompt": "digital artwork, oil painting. painterly brushstrokes, holidays,",
         "negative_prompt": "grainy+, photo, oversaturated, overexposed, blurry, compressed "
         "jpg+, noisy++, unfocused , black and white", "seed": 3293022630,
         "guidance_scale": 8.0, "steps": 35, "sampler": "Euler", "model": "juggernautXL",
         "width": 1024, "height": 1024},
        {},
        set(),
    ),
    "novelai1_cropped.png": (
        "NovelAI",
        {"prompt": "masterpiece, best quality,  cat, space, icon", "seed": 2253955223,
         "guidance_scale": 10.0, "steps": 50, "sampler": "Euler a", "model": "Stable Diffusion",
         "negative_prompt": NOVELAI_NEGATIVE},
        {"model_hash": "1D44365E"},
        {"width", "height"},
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_sample_reads_as_sd_parsers_expects(name):
    app, fields, extras, unknown = EXPECTED[name]
    found = read_image_settings(SAMPLES / name)
    assert found is not None and found.source == app
    for field, value in fields.items():
        assert getattr(found.request, field) == value, field
        assert field in found.found, field
    for key, value in extras.items():
        assert found.request.extras[key] == value, key
    assert not unknown & found.found  # unknown stays unknown, never a default


def test_values_easel_cannot_run_are_kept_and_explained():
    fooocus = read_image_settings(SAMPLES / "fooocus1_cropped.png")
    assert fooocus.original["sampler"] == "dpmpp_2m_sde_gpu (karras)"
    assert any("dpmpp_2m_sde_gpu" in note and "differ" in note for note in fooocus.notes)
    assert any("styles" in note for note in fooocus.notes)  # Fooocus-only features listed
    comfy = read_image_settings(SAMPLES / "img2img_cropped.png")
    assert any("size is not in the file" in note for note in comfy.notes)
    night = read_image_settings(SAMPLES / "night_evening_day_morning_cropped.png")
    assert any("2 samplers" in note for note in night.notes)


@pytest.mark.parametrize("name", ["empty_file.png", "empty_image.png", "empty_image.jpg"])
def test_files_without_metadata_give_none(name):
    assert read_image_settings(SAMPLES / name) is None


#: sd-parsers' names for the fields both read
_SD_PARSERS_PARAMS = {"steps": "steps", "cfg_scale": "guidance_scale", "seed": "seed"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_easel_agrees_with_sd_parsers_on_every_field_it_reads(name):
    info = ParserManager(eagerness=Eagerness.EAGER).parse(SAMPLES / name)
    found = read_image_settings(SAMPLES / name)
    assert info is not None and info.samplers
    # of several samplers sd-parsers lists them all; Easel picks the one behind the image
    sampler = next(
        s for s in info.samplers
        if str(s.parameters.get("seed")) == found.original.get("seed", str(found.request.seed))
    )  # fmt: skip
    for theirs, ours in _SD_PARSERS_PARAMS.items():
        if theirs in sampler.parameters:
            assert float(sampler.parameters[theirs]) == float(getattr(found.request, ours))
    if sampler.prompts:
        assert all(p.value.strip() in found.request.prompt for p in sampler.prompts)
    if sampler.model and sampler.model.name:
        assert found.request.model == sampler.model.name
