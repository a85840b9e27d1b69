"""Native diffusion edits for real: image-to-image (SDEdit) and inpaint (RePaint) with the
built-in emoji-ldm on a real photo, and on tiny pixel-space models; requests a model cannot honour
are refused before any work, and documented fallbacks are reported and recorded."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusion_tiny import save_random_model
from gan_vae_tiny import RecordingContext, same_pictures
from PIL import Image, ImageDraw

from engine.api import GenerationRequest, LoraRef, Mode, RuntimeOptions
from engine.errors import InputError
from engine.families.editing import start_timesteps
from engine.generate import run_generation

BUILTIN = "builtin:emoji-ldm"


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    """A real photo (scikit-learn's china.jpg, CC BY 4.0), not square, larger than 64 px."""
    from sklearn.datasets import load_sample_image

    path = tmp_path_factory.mktemp("photo") / "china.png"
    Image.fromarray(load_sample_image("china.jpg")).resize((160, 107)).save(path)
    return path


@pytest.fixture(scope="module")
def mask(tmp_path_factory):
    path = tmp_path_factory.mktemp("mask") / "mask.png"
    image = Image.new("L", (160, 107), 0)
    ImageDraw.Draw(image).ellipse((50, 20, 110, 80), fill=255)
    image.save(path)
    return path


def edit(model=BUILTIN, **fields) -> GenerationRequest:
    fields.setdefault("steps", 8)
    fields.setdefault("sampler", "DDIM")
    return GenerationRequest(model=str(model), runtime=RuntimeOptions(cpu_threads=1), **fields)


def pixels(image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def test_builtin_inpaint_keeps_every_pixel_outside_the_mask(photo, mask):
    request = edit(
        prompt="a blue heart",
        mode=Mode.INPAINT,
        init_image=str(photo),
        mask_image=str(mask),
        strength=1.0,
        seed=4,
        width=160,
        height=104,
        batch_size=2,
    )
    ctx = RecordingContext()
    result = run_generation(request, ctx)
    source, inside = pixels(Image.open(photo)), np.asarray(Image.open(mask)) > 0
    for image in result.images:
        assert image.size == (160, 107)  # the canvas's size, not the model's 64 px
        diff = np.abs(pixels(image) - source)
        assert diff[~inside].max() <= 1
        assert diff[inside].mean() > 10  # the masked part really was repainted
    assert not same_pictures(result.images[0], result.images[1])
    assert len(ctx.of_type("Progress")) >= 8
    meta = result.metadata[0]
    assert meta["mode"] == "inpaint" and meta["model_name"] == "emoji-ldm"
    assert len(meta["model_hash"]) == 10 and meta["width"] == 160


def test_builtin_inpaint_is_seeded_and_batch_image_i_is_seed_plus_i(photo, mask):
    fields = dict(mode=Mode.INPAINT, init_image=str(photo), mask_image=str(mask), strength=0.8)
    batch = run_generation(edit(seed=10, batch_size=2, **fields), RecordingContext())
    single = run_generation(edit(seed=11, **fields), RecordingContext())
    assert same_pictures(batch.images[1], single.images[0], tolerance=1)


def test_builtin_img2img_follows_the_photo_more_at_low_strength(photo):
    ctx = RecordingContext()
    low = run_generation(edit(mode=Mode.IMG2IMG, init_image=str(photo), strength=0.25), ctx)
    high = run_generation(
        edit(mode=Mode.IMG2IMG, init_image=str(photo), strength=0.95), RecordingContext()
    )
    from engine.families.common import fit_square

    target = pixels(fit_square(Image.open(photo).convert("RGB"), 64))
    near = np.abs(pixels(low.images[0]) - target).mean()
    far = np.abs(pixels(high.images[0]) - target).mean()
    assert low.images[0].size == (64, 64)
    assert near < far
    assert any("scaled and cropped" in n for n in ctx.notices)
    assert low.metadata[0]["strength"] == 0.25
    # strength 0.25 of 8 steps runs the last 2 (as diffusers' img2img does)
    assert len(ctx.steps()) == 2
    assert start_timesteps([7, 5, 3, 1], 0.5) == [3, 1]


def test_pixel_space_ddpm_inpaints_too(tmp_path):
    folder = save_random_model("ddpm", tmp_path / "ddpm")
    picture = tmp_path / "pic.png"
    Image.new("RGB", (16, 16), (200, 30, 30)).save(picture)
    hole = tmp_path / "hole.png"
    image = Image.new("L", (16, 16), 0)
    ImageDraw.Draw(image).rectangle((4, 4, 11, 11), fill=255)
    image.save(hole)
    request = edit(
        folder, mode=Mode.INPAINT, init_image=str(picture), mask_image=str(hole), steps=4
    )
    for jumps in (0, 2):
        result = run_generation(
            request.replace(extras={"resample_jumps": jumps}), RecordingContext()
        )
        out = pixels(result.images[0])
        assert (out[:4] == (200, 30, 30)).all() and (out[12:] == (200, 30, 30)).all()


def test_requests_a_model_cannot_honour_are_refused_before_any_work(tmp_path, photo):
    from gan_vae_tiny import save_random_model as save_gan_or_vae

    dcgan = save_gan_or_vae("dcgan", tmp_path / "dcgan")
    vae = save_gan_or_vae("vae", tmp_path / "vae")
    cases = [
        (edit(loras=(LoraRef("/x/some.pt", 1.0),)), "emoji-ldm cannot use LoRAs"),
        (
            edit(dcgan, mode=Mode.IMG2IMG, init_image=str(photo)),
            "dcgan makes .* from noise; it cannot start from an image",
        ),
        (edit(dcgan, init_image=str(photo)), "cannot start from an image"),
        (
            edit(vae, mode=Mode.INPAINT, init_image=str(photo), mask_image=str(photo)),
            "cannot repaint a masked area",
        ),
    ]
    for request, message in cases:
        ctx = RecordingContext()
        with pytest.raises(InputError, match=message):
            run_generation(request, ctx)
        assert not ctx.events  # refused before any model loaded or step ran


def test_fallbacks_are_reported_and_recorded(photo):
    ctx = RecordingContext()
    result = run_generation(edit(sampler="Euler a", width=512, height=512, steps=4), ctx)
    assert result.images[0].size == (64, 64)
    notices = result.info["notices"]
    assert any("so DDIM ran" in n for n in notices)
    assert any("512x512 size was not used" in n for n in notices)
    meta = result.metadata[0]
    assert meta["sampler"] == "DDIM" and (meta["width"], meta["height"]) == (64, 64)
    assert "strength" not in meta  # a text-to-image run used no strength: not claimed
