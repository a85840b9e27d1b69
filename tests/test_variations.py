"""The request builders behind the gallery's Vary, Upscale and Hires fix (engine/variations.py)."""

from __future__ import annotations

import pytest

from engine.api import GenerationRequest, Mode, UpscaleRequest, request_from_dict
from engine.api_control import ControlUnit, HiresFix
from engine.errors import InputError
from engine.variations import (
    hires_request,
    pick_upscaler,
    upscale_request,
    variation_label,
    vary_request,
)


def _source(**changes) -> GenerationRequest:
    base = GenerationRequest(
        prompt="a lighthouse at dusk",
        model="/models/sd15.safetensors",
        seed=1234,
        steps=25,
        width=512,
        height=768,
        control=(ControlUnit(image="/work/c.png", model="/models/cn-canny", preprocessor="canny"),),
        extras={"style": "Cinematic"},
    )
    return base.replace(**changes)


@pytest.mark.parametrize(("kind", "strength"), [("subtle", 0.35), ("strong", 0.7)])
def test_vary_is_img2img_from_the_result_with_a_new_seed(kind, strength):
    source = _source()
    varied = vary_request(source, "/gallery/7.png", (512, 768), kind=kind, entry_id=7, seed=99)
    assert varied.mode is Mode.IMG2IMG
    assert varied.init_image == "/gallery/7.png" and varied.mask_image is None
    assert varied.strength == strength
    assert varied.seed == 99 and varied.seed != source.seed
    assert (varied.prompt, varied.model, varied.steps) == (source.prompt, source.model, 25)
    assert varied.control == source.control  # the steering stays
    assert varied.extras["style"] == "Cinematic"
    assert varied.extras["variation_of"] == {
        "kind": f"vary-{kind}",
        "seed": 1234,
        "prompt": "a lighthouse at dusk",
        "entry_id": 7,
    }
    assert "variation_of" not in source.extras  # the source request is untouched


def test_vary_draws_new_seeds_and_uses_the_results_size():
    source = _source(hires=HiresFix(scale=2.0))
    seeds = {vary_request(source, "/g.png", (1030, 770)).seed for _ in range(8)}
    assert len(seeds) > 1 and source.seed not in seeds
    varied = vary_request(source, "/g.png", (1030, 770))
    assert (varied.width, varied.height) == (1024, 768)  # multiples of 8, the picture's size
    assert varied.hires is None  # the picture is already at its final size


def test_vary_metadata_round_trips_through_json():
    varied = vary_request(_source(), "/g.png", (512, 768), kind="strong", entry_id=3, seed=5)
    again = request_from_dict(varied.to_dict())
    assert again == varied
    assert variation_label(again.extras) == "Vary (strong) of #3"
    assert variation_label({}) == ""


def test_unknown_variation_kind_is_refused_by_name():
    with pytest.raises(InputError, match="Unknown variation 'wild'"):
        vary_request(_source(), "/g.png", (64, 64), kind="wild")


def test_upscale_request_with_and_without_a_model():
    request = upscale_request("/g.png", 4, model="/models/4x-esrgan.pth")
    assert isinstance(request, UpscaleRequest)
    assert (request.image, request.model, request.scale) == ("/g.png", "/models/4x-esrgan.pth", 4)
    lanczos = upscale_request("/g.png", 2)
    assert lanczos.model == "" and lanczos.scale == 2.0


def test_pick_upscaler_prefers_the_factor_then_larger():
    models = [("x4.pth", 4), ("x2.pth", 2), ("unknown.pth", 0)]
    assert pick_upscaler(models, 2) == "x2.pth"
    assert pick_upscaler(models, 4) == "x4.pth"
    assert pick_upscaler([("x4.pth", 4), ("x8.pth", 8)], 2) == "x4.pth"
    assert pick_upscaler([("x2.pth", 2)], 4) == "x2.pth"  # the best there is
    assert pick_upscaler([], 2) == ""


def test_hires_keeps_the_seed_and_doubles_the_size():
    source = _source(mode=Mode.TXT2IMG)
    hires = hires_request(source, (512, 768), scale=2.0, strength=0.45, entry_id=9)
    assert hires.mode is Mode.TXT2IMG and hires.init_image is None
    assert hires.seed == source.seed  # the same first pass
    assert (hires.width, hires.height) == (1024, 1536)
    assert hires.hires == HiresFix(scale=2.0, strength=0.45, upscaler="latent", steps=0)
    assert hires.extras["variation_of"]["kind"] == "hires"
    assert request_from_dict(hires.to_dict()) == hires


def test_hires_past_the_largest_side_says_how_to_fix_it():
    with pytest.raises(InputError, match="Choose a smaller scale"):
        hires_request(_source(), (2048, 2048), scale=4.0)
