"""Control inputs in PNG metadata: Easel's JSON round trip and A1111's text both ways."""

from __future__ import annotations

from engine.api import GenerationRequest
from engine.api_control import ControlUnit, HiresFix, ImagePrompt, Region
from engine.metadata.a1111 import parse_a1111, split_fields
from engine.metadata.writer import a1111_parameters


def steered_request() -> GenerationRequest:
    return GenerationRequest(
        prompt="a lighthouse",
        model="/models/sd15.safetensors",
        width=1024,
        height=768,
        steps=20,
        seed=5,
        control=[
            ControlUnit(
                image="/tmp/edges.png",
                model="/models/control_v11p_sd15_canny.safetensors",
                preprocessor="canny",
                weight=0.8,
                start=0.1,
                end=0.9,
                options={"low": 50, "high": 150},
            ),
            ControlUnit(
                image="/tmp/sketch.png",
                model="cn-scribble",
                preprocessor="scribble",
                guess_mode=True,
            ),
        ],
        image_prompts=[ImagePrompt(image="/tmp/ref.png", weight=0.6)],
        regions=[Region(mask="/tmp/left.png", prompt="a red boat", weight=1.2)],
        hires=HiresFix(scale=2.0, strength=0.45, steps=10),
    )


def test_the_request_json_keeps_every_control_input():
    request = steered_request()
    again = GenerationRequest.from_json(request.to_json())
    assert again == request
    assert again.control[0].options == {"low": 50, "high": 150}
    assert again.hires == HiresFix(scale=2.0, strength=0.45, steps=10)


def test_a1111_text_writes_units_the_way_the_controlnet_extension_does():
    data = {**steered_request().to_dict(), "base_model": "sd1"}
    text = a1111_parameters(data)
    fields = split_fields(text.split("\n")[-1])
    assert fields["ControlNet 0"] == (
        "Module: canny, Model: control_v11p_sd15_canny, Weight: 0.8, Resize Mode: Just Resize, "
        "Processor Res: 1024, Threshold A: 50, Threshold B: 150, Guidance Start: 0.1, "
        "Guidance End: 0.9, Pixel Perfect: False, Control Mode: Balanced"
    )
    assert fields["ControlNet 1"].startswith("Module: invert, Model: cn-scribble, Weight: 1,")
    assert "Control Mode: ControlNet is more important" in fields["ControlNet 1"]
    assert fields["ControlNet 2"].startswith("Module: ip-adapter_clip_sd15, Model: ip-adapter_sd15")
    # the hires fix as A1111 writes it: Size is the first pass
    assert fields["Size"] == "512x384"
    assert fields["Hires upscale"] == "2"
    assert fields["Hires steps"] == "10"
    assert fields["Hires upscaler"] == "Latent (bicubic)"
    assert fields["Denoising strength"] == "0.45"
    assert "Hires resize" not in fields


def test_a1111_reader_restores_the_hires_fix_and_keeps_units_for_the_panel():
    data = {**steered_request().to_dict(), "base_model": "sd1"}
    imported = parse_a1111(a1111_parameters(data))
    request = imported.request
    assert (request.width, request.height) == (1024, 768)
    assert request.hires == HiresFix(scale=2.0, strength=0.45, upscaler="latent", steps=10)
    units = request.extras["a1111_controlnet"]
    assert [u["kind"] for u in units] == ["control", "control", "image_prompt"]
    first = units[0]
    assert (first["preprocessor"], first["model"], first["weight"]) == (
        "canny",
        "control_v11p_sd15_canny",
        0.8,
    )
    assert (first["start"], first["end"], first["options"]) == (0.1, 0.9, {"low": 50, "high": 150})
    assert units[1]["preprocessor"] == "scribble" and units[1]["guess_mode"] is True
    assert any("control images are not stored" in note for note in imported.notes)
    assert not any("ControlNet 0" in note for note in imported.notes)  # not "unused"


def test_a_real_a1111_controlnet_text_is_read():
    text = (
        "a cat\nNegative prompt: ugly\nSteps: 20, Sampler: DPM++ 2M, Schedule type: Karras, "
        "CFG scale: 7, Seed: 1, Size: 512x512, Model hash: 6ce0161689, Model: v1-5, "
        "Denoising strength: 0.7, "
        'ControlNet 0: "Module: depth_midas, Model: control_v11f1p_sd15_depth [cfd03158], '
        "Weight: 1.0, Resize Mode: Crop and Resize, Low Vram: False, Processor Res: 512, "
        "Guidance Start: 0.0, Guidance End: 1.0, Pixel Perfect: True, Control Mode: Balanced, "
        'Hr Option: Both, Save Detected Map: True", '
        "Hires upscale: 1.5, Hires steps: 12, Hires upscaler: R-ESRGAN 4x+, Version: v1.10.1"
    )
    imported = parse_a1111(text)
    request = imported.request
    assert (request.width, request.height) == (768, 768)
    assert request.hires == HiresFix(scale=1.5, strength=0.7, upscaler="R-ESRGAN 4x+", steps=12)
    unit = request.extras["a1111_controlnet"][0]
    assert (unit["preprocessor"], unit["model"]) == ("depth", "control_v11f1p_sd15_depth")


def test_a_request_without_control_writes_no_control_fields():
    text = a1111_parameters(GenerationRequest(prompt="x", width=512, height=512).to_dict())
    assert "ControlNet" not in text and "Hires" not in text and "Size: 512x512" in text
