"""Regional prompts through the real engine on tiny SD 1.x / SDXL pipelines: attention masking
in the UNet's cross-attention, one pass, the cached UNet restored afterwards."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from engine.api_control import ControlUnit, Region
from engine.sd.regions import RegionalAttention, RegionalPrompts, layer_size, regional_attention
from tests.control.conftest import make_request, pixels, run

OCEAN = "a deep blue ocean with white waves"


@pytest.fixture(scope="module")
def masks(tmp_path_factory):
    folder = tmp_path_factory.mktemp("region-masks")
    for size in (64, 128):
        mask = np.zeros((size, size), np.uint8)
        mask[:, size // 2 :] = 255
        Image.fromarray(mask).save(folder / f"right-{size}.png")
    Image.new("L", (64, 64), 0).save(folder / "empty.png")
    return folder


def region(masks, size=64, **changes) -> Region:
    fields = dict(mask=str(masks / f"right-{size}.png"), prompt=OCEAN, weight=1.0)
    fields.update(changes)
    return Region(**fields)


@pytest.mark.parametrize("base", ["sd1", "sdxl"])
def test_a_region_changes_the_picture_under_its_mask_far_more_than_elsewhere(
    engine, control_models, masks, base
):
    # 128 px (16x16 latents): at 64 px the tiny UNet's 3x3 convolutions already see the whole
    # latent. Its random self-attention attends almost uniformly, so part of the change reaches
    # the far side (trained models attend far more locally); the far quarter is compared with
    # the masked one. The exact masking per layer is the next-but-two test's.
    model = control_models[base]
    plain = run(engine, make_request(model, width=128, height=128))
    steered = run(engine, make_request(model, width=128, height=128, regions=[region(masks, 128)]))
    change = np.abs(pixels(steered) - pixels(plain)).mean(axis=2)
    under, far = change[:, 96:].mean(), change[:, :32].mean()
    assert under > 2.0, under
    assert under > 1.5 * far, (under, far)  # measured: sd1 1.8x, sdxl 2.0x


@pytest.mark.parametrize("base", ["sd1", "sdxl"])
def test_weight_zero_region_is_the_plain_picture_pixel_for_pixel(
    engine, control_models, masks, base
):
    model = control_models[base]
    plain = run(engine, make_request(model))
    off = run(engine, make_request(model, regions=[region(masks, weight=0.0)]))
    assert np.array_equal(pixels(off), pixels(plain))


def _unets(services):
    found = []
    for key in services.cache.keys():
        with services.cache.use(key, lambda: None) as item:
            if hasattr(item, "unet"):
                found.append(item.unet)
    return found


def test_processors_are_restored_and_the_next_job_is_clean(engine, services, control_models, masks):
    model = control_models["sd1"]
    before = run(engine, make_request(model))
    run(engine, make_request(model, regions=[region(masks)]))
    after = run(engine, make_request(model))
    assert np.array_equal(pixels(after), pixels(before))
    unets = _unets(services)
    assert unets
    for unet in unets:
        assert not any(isinstance(p, RegionalAttention) for p in unet.attn_processors.values())


def test_the_blend_leaves_the_negative_half_and_the_unmasked_area_exactly_alone(control_models):
    """One real cross-attention layer of the tiny UNet, fed the same input with and without
    the region: only masked positions of the positive half move."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_pretrained(str(control_models["sd1"] / "unet"))
    layer = next(m for name, m in unet.named_modules() if name.endswith("attn2"))
    mask = torch.zeros(64, 64)
    mask[:, 32:] = 1.0
    region_embeds = torch.randn(1, 77, 32)
    # 8x8 latents; the tiny UNet cross-attends at its 4x4 level: 16 positions
    regions = RegionalPrompts([region_embeds], [1.0], mask[None], images=1, latent_size=(8, 8))
    hidden = torch.randn(2, 16, layer.to_q.in_features)  # [negative, positive]
    prompts = torch.randn(2, 77, 32)
    with torch.no_grad():
        plain = layer(hidden, encoder_hidden_states=prompts)
        with regional_attention(unet, regions):
            steered = layer(hidden, encoder_hidden_states=prompts)
        restored = layer(hidden, encoder_hidden_states=prompts)
    assert torch.equal(steered[0], plain[0])  # the negative prompt's half
    grid = (steered[1] - plain[1]).abs().amax(dim=-1).reshape(4, 4)
    assert torch.count_nonzero(grid[:, :2]) == 0
    assert bool((grid[:, 2:] > 1e-4).all())
    assert torch.equal(restored, plain)


def test_overlapping_regions_share_their_area_and_layer_sizes_round_up():
    masks = torch.zeros(2, 16, 16)
    masks[0] = 1.0  # everywhere
    masks[1, :, 8:] = 1.0  # the right half
    regions = RegionalPrompts([torch.zeros(1, 77, 8)] * 2, [1.0, 0.5], masks, 1, (2, 2))
    coefficients = regions.coefficients(4, torch.zeros(1)).reshape(2, 2, 2)
    # where both masks cover, each gets half its weight; where one does, all of it
    assert torch.allclose(coefficients[0], torch.tensor([[1.0, 0.5], [1.0, 0.5]]))
    assert torch.allclose(coefficients[1], torch.tensor([[0.0, 0.25], [0.0, 0.25]]))
    assert layer_size((9, 7), 9 * 7) == (9, 7)
    assert layer_size((9, 7), 5 * 4) == (5, 4)
    assert layer_size((9, 7), 3 * 2) == (3, 2)
    assert layer_size((9, 7), 11) is None


def test_an_empty_mask_is_ignored_with_a_note(engine, control_models, masks):
    model = control_models["sd1"]
    plain = run(engine, make_request(model))
    empty = Region(mask=str(masks / "empty.png"), prompt=OCEAN)
    result = run(engine, make_request(model, regions=[empty]))
    assert np.array_equal(pixels(result), pixels(plain))
    assert any("Region 1 has an empty mask" in note for note in result.info["notices"])


def test_a_missing_mask_fails_clearly_and_the_engine_serves_on(engine, control_models, tmp_path):
    from engine.events import Failed

    bad = Region(mask=str(tmp_path / "nowhere.png"), prompt=OCEAN)
    final = engine.run(make_request(control_models["sd1"], regions=[bad]), timeout=300)
    assert isinstance(final, Failed) and "region 1" in final.message
    run(engine, make_request(control_models["sd1"]))


@pytest.mark.parametrize("mode", ["img2img", "inpaint"])
def test_regions_work_in_img2img_and_inpaint(engine, control_models, pictures, masks, mode):
    extra = {"mode": mode, "init_image": str(pictures / "init.png"), "strength": 0.8, "steps": 4}
    if mode == "inpaint":
        extra["mask_image"] = str(pictures / "mask-right.png")
    model = control_models["sd1"]
    plain = run(engine, make_request(model, **extra))
    steered = run(engine, make_request(model, regions=[region(masks)], **extra))
    off = run(engine, make_request(model, regions=[region(masks, weight=0.0)], **extra))
    assert np.abs(pixels(steered) - pixels(plain)).mean() > 0.5
    assert np.array_equal(pixels(off), pixels(plain))


@pytest.mark.parametrize("base", ["sd1", "sdxl"])
def test_regions_with_a_controlnet_unit(engine, control_models, pictures, masks, base):
    unit = ControlUnit(
        image=str(pictures / "drawing.png"),
        model=str(control_models[f"cn_{base}"]["folder"]),
        preprocessor="canny",
        weight=0.5,
        end=0.4,  # the tiny random ControlNet drowns the prompt itself in the steps it steers
    )
    model = control_models[base]
    controlled = run(engine, make_request(model, control=[unit]))
    both = run(engine, make_request(model, control=[unit], regions=[region(masks)]))
    off = run(engine, make_request(model, control=[unit], regions=[region(masks, weight=0.0)]))
    assert np.abs(pixels(both) - pixels(controlled)).mean() > 0.3  # measured 1.7 / 0.75
    assert np.array_equal(pixels(off), pixels(controlled))


def test_two_regions_and_a_batch(engine, control_models, masks, tmp_path):
    left = np.zeros((64, 64), np.uint8)
    left[:, :32] = 200  # grey: a softer region
    Image.fromarray(left).save(tmp_path / "left.png")
    model = control_models["sd1"]
    regions = [region(masks), Region(mask=str(tmp_path / "left.png"), prompt="a green forest")]
    one = run(engine, make_request(model, regions=regions[:1], batch_size=2))
    two = run(engine, make_request(model, regions=regions, batch_size=2))
    assert len(two.images) == 2
    for index in range(2):
        diff = np.abs(
            np.asarray(two.images[index]).astype(np.int16)
            - np.asarray(one.images[index]).astype(np.int16)
        )
        assert diff.mean() > 0.5
    assert two.metadata[0]["regions"][1]["prompt"] == "a green forest"


@pytest.mark.parametrize("base", ["sd1", "sdxl"])
def test_regions_with_an_image_prompt(engine, control_models, ip_models, references, masks, base):
    """The IP-Adapter's processors are the ones wrapped: a region's pass keeps the image tokens
    (positive half) and its own scale."""
    from engine.api_control import ImagePrompt

    picture = ImagePrompt(
        image=str(references / "warm.png"), weight=0.8, model=str(ip_models[f"ip_{base}"])
    )
    model = control_models[base]
    prompted = run(engine, make_request(model, image_prompts=[picture]))
    both = run(engine, make_request(model, image_prompts=[picture], regions=[region(masks)]))
    off = run(
        engine,
        make_request(model, image_prompts=[picture], regions=[region(masks, weight=0.0)]),
    )
    assert np.abs(pixels(both) - pixels(prompted)).mean() > 0.5
    assert np.array_equal(pixels(off), pixels(prompted))
    again = run(engine, make_request(model, image_prompts=[picture]))
    assert np.array_equal(pixels(again), pixels(prompted))  # adapter and regions both undone
