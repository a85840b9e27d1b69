"""Autoguidance (engine.families.autoguide): the step's maths, the weak UNet beside the weights,
the request knob, editing, metadata, and the clear messages for broken or missing guides."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from diffusion_tiny import TINY_UNET, save_random_model, tiny_config
from gan_vae_tiny import RecordingContext, same_pictures
from PIL import Image

from engine.api import GenerationRequest, Mode, RuntimeOptions
from engine.errors import InputError, ModelError
from engine.families.autoguide import (
    GUIDE_FILE,
    Autoguide,
    autoguidance_scale,
    load_guide,
    save_guide,
)
from engine.families.ddpm import GuidedDenoiser, UNet, unet_config
from engine.families.registry import family_module, load_native_model
from engine.generate import run_generation


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def random_unet(seed: int, **overrides) -> UNet:
    config = tiny_config("ddpm", conditioning="text", **overrides)
    torch.manual_seed(seed)
    unet = UNet(unet_config(config, 3))
    with torch.no_grad():
        for p in unet.parameters():  # no zero output layer: every input changes eps
            p.add_(torch.randn_like(p) * 0.05)
    return unet.eval()


def test_the_step_is_cfg_plus_the_push_away_from_the_weak_model():
    good, weak = random_unet(0), random_unet(1)
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([30, 30])
    cond = torch.nn.functional.normalize(torch.randn(1, 384), dim=1)
    with torch.no_grad():
        cfg = GuidedDenoiser(good, cond, None, 3.0)(x, t)
        pushed = GuidedDenoiser(good, cond, None, 3.0, Autoguide(weak, 2.5))(x, t)
        rows = good.condition_or_null(cond, 2)
        by_hand = cfg + 1.5 * (good(x, t, rows) - weak(x, t, rows))
        same_model = GuidedDenoiser(good, cond, None, 3.0, Autoguide(good, 2.5))(x, t)
    assert torch.allclose(pushed, by_hand, atol=1e-5)
    assert not torch.allclose(pushed, cfg, atol=1e-3)
    # a weak copy that agrees with the model everywhere changes nothing
    assert torch.allclose(same_model, cfg, atol=1e-5)


def test_guide_file_round_trip_and_broken_or_foreign_files_are_model_errors(tmp_path):
    folder = save_random_model("ldm", tmp_path / "ldm", conditioning="text")
    model = load_native_model(folder).model
    assert load_guide(folder, model) is None
    path = save_guide(folder, model.unet)
    held = load_guide(folder, model)
    assert path.name == GUIDE_FILE
    for name, tensor in model.unet.state_dict().items():  # fp16 on disk, float32 loaded
        assert torch.allclose(held.unet.state_dict()[name], tensor, atol=1e-3)
    assert held.unet is not model.unet
    assert not any("guide" in key for key in model.state_dict())  # never saved with the model
    path.write_bytes(b"\x00 not safetensors")
    with pytest.raises(ModelError, match="delete it"):
        load_native_model(folder)
    unconditioned = family_module("ldm").build(tiny_config("ldm", conditioning="none"))
    save_guide(folder, unconditioned.unet)  # a UNet that takes no prompt cannot guide this one
    with pytest.raises(ModelError, match="does not fit"):
        load_native_model(folder)
    wider = family_module("ldm").build(tiny_config("ldm", conditioning="text"))
    save_guide(folder, wider.unet)
    original = path.read_bytes()
    data = original.replace(b'blocks_per_level\\": 1', b'blocks_per_level\\": 2')
    assert data != original and len(data) == len(original)
    path.write_bytes(data)  # the stored config no longer matches the tensors
    with pytest.raises(ModelError, match="does not fit"):
        load_native_model(folder)


def test_a_smaller_weak_unet_guides_a_larger_model(tmp_path):
    """Karras et al.'s best guides are smaller than the model: the file carries its own
    architecture, and the smaller copy is what runs beside the model."""
    folder = save_random_model("ldm", tmp_path / "ldm", conditioning="text")
    narrow = {**TINY_UNET, "conditioning": "text", "cond_dim": 384, "num_classes": 0}
    narrow |= {"base_channels": 4, "head_channels": 4}
    small = family_module("ldm").build(tiny_config("ldm", conditioning="text", unet=narrow))
    save_guide(folder, small.unet)
    model = load_native_model(folder).model
    held = load_guide(folder, model)
    assert held.unet.config.base_channels == 4 != model.unet.config.base_channels
    off = run_generation(request(folder), RecordingContext()).images[0]
    pushed = run_generation(request(folder, extras={"autoguidance": 2.0}), RecordingContext())
    assert not same_pictures(pushed.images[0], off, tolerance=2)


def request(folder, **fields) -> GenerationRequest:
    fields.setdefault("steps", 5)
    fields.setdefault("sampler", "DDIM")
    fields.setdefault("guidance_scale", 3.0)
    fields.setdefault("prompt", "a red apple")
    fields.setdefault("seed", 7)
    return GenerationRequest(model=str(folder), runtime=RuntimeOptions(cpu_threads=1), **fields)


@pytest.fixture(scope="module")
def guided_pair(tmp_path_factory):
    """(folder with a weak UNet and default autoguidance 2, the same folder without one)."""
    root = tmp_path_factory.mktemp("autoguide")
    plain = save_random_model("ldm", root / "plain", conditioning="text")
    guided = root / "guided"
    shutil.copytree(plain, guided)
    save_random_model("ldm", root / "weak", seed=5, conditioning="text")
    weak = load_native_model(root / "weak").model
    save_guide(guided, weak.unet)
    config = json.loads((guided / "config.json").read_text())
    (guided / "config.json").write_text(json.dumps({**config, "autoguidance": 2.0}))
    return guided, plain


def test_through_the_engine_the_default_scale_changes_the_picture_and_is_recorded(guided_pair):
    guided, plain = guided_pair
    pushed = run_generation(request(guided), RecordingContext())
    off = run_generation(request(guided, extras={"autoguidance": 1.0}), RecordingContext())
    baseline = run_generation(request(plain), RecordingContext())
    assert same_pictures(off.images[0], baseline.images[0])
    assert not same_pictures(pushed.images[0], baseline.images[0], tolerance=2)
    assert pushed.metadata[0]["autoguidance"] == 2.0
    assert "autoguidance" not in off.metadata[0]
    assert "autoguidance" not in baseline.metadata[0]
    again = run_generation(request(guided), RecordingContext())
    assert same_pictures(again.images[0], pushed.images[0])


def test_bad_scales_and_a_scale_without_a_guide_get_one_clear_message(guided_pair):
    guided, plain = guided_pair
    for bad in (0.5, 9, "strong"):
        with pytest.raises(InputError, match="autoguidance"):
            run_generation(request(guided, extras={"autoguidance": bad}), RecordingContext())
    with pytest.raises(InputError, match="no weaker copy"):
        run_generation(request(plain, extras={"autoguidance": 2.0}), RecordingContext())
    # 1 (off) is fine on any model, and the model's config default is read when not asked
    run_generation(request(plain, extras={"autoguidance": 1}), RecordingContext())
    assert autoguidance_scale({"autoguidance": 1.5}, request(plain)) == 1.5
    assert autoguidance_scale({}, request(plain)) == 1.0


def test_inpaint_with_autoguidance_keeps_the_pixels_outside_the_mask(guided_pair, tmp_path):
    guided, _ = guided_pair
    rng = np.random.default_rng(0)
    photo, mask = tmp_path / "photo.png", tmp_path / "mask.png"
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(photo)
    hole = np.zeros((32, 32), np.uint8)
    hole[8:24, 8:24] = 255
    Image.fromarray(hole).save(mask)
    fields = dict(mode=Mode.INPAINT, init_image=str(photo), mask_image=str(mask), strength=0.9)
    pushed = run_generation(request(guided, **fields), RecordingContext()).images[0]
    off = run_generation(
        request(guided, extras={"autoguidance": 1.0}, **fields), RecordingContext()
    ).images[0]
    source = np.asarray(Image.open(photo).convert("RGB"))
    outside = hole == 0
    assert np.array_equal(np.asarray(pushed)[outside], source[outside])
    assert not same_pictures(pushed, off)  # the masked part was sampled with the push


def test_pixel_space_ddpm_autoguides_too(tmp_path):
    folder = save_random_model("ddpm", tmp_path / "ddpm", conditioning="text")
    save_random_model("ddpm", tmp_path / "weak", seed=9, conditioning="text")
    save_guide(folder, load_native_model(tmp_path / "weak").model)
    off = run_generation(request(folder), RecordingContext()).images[0]
    pushed = run_generation(request(folder, extras={"autoguidance": 3.0}), RecordingContext())
    assert not same_pictures(pushed.images[0], off, tolerance=2)
    assert pushed.metadata[0]["autoguidance"] == 3.0


def test_the_model_cache_counts_the_weak_copy(tmp_path):
    """The weak UNet sits outside the model's module tree; the cache's memory budget must still
    see it, or a guided model would hold more than the cache thinks."""
    from engine.library.cache import estimate_size_bytes

    folder = save_random_model("ldm", tmp_path / "ldm", conditioning="text")
    plain = estimate_size_bytes(load_native_model(folder))
    weak = load_native_model(folder).model.unet
    save_guide(folder, weak)
    guided = load_native_model(folder)
    extra = sum(p.numel() * 4 for p in weak.parameters()) + sum(
        b.numel() * b.element_size() for b in weak.buffers()
    )
    assert estimate_size_bytes(guided) == plain + extra
    assert guided.to("cpu") is guided
