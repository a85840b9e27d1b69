"""GAN and VAE families: forward passes, sampling through the real model folder, determinism,
exploration knobs, tiling, cancel mid-sampling, and broken folders."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from gan_vae_tiny import (
    GAN_VAE_FAMILIES,
    RESOLUTION,
    RecordingContext,
    same_pictures,
    save_random_model,
    tiny_config,
    write_pictures,
)

from engine.api import GenerationRequest, RuntimeOptions
from engine.errors import InputError, JobCancelled, ModelError
from engine.families import cyclegan, dcgan, nvae, stylegan, vae
from engine.families.registry import generate_native, load_native_model
from engine.library.resolve import resolve_model

GENERATIVE = [f for f in GAN_VAE_FAMILIES if f != "cyclegan"]


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def request_for(folder, **fields) -> GenerationRequest:
    fields.setdefault("runtime", RuntimeOptions(cpu_threads=1))
    return GenerationRequest(model=str(folder), **fields)


def run(folder, ctx=None, **fields):
    request = request_for(folder, **fields)
    return generate_native(request, ctx or RecordingContext(), resolve_model(request.model))


@pytest.fixture
def picture(tmp_path):
    return write_pictures(tmp_path / "pictures", count=2, size=(40, 36)) / "picture_00.png"


# -- forward passes ---------------------------------------------------------------------------
def test_forward_passes_have_the_right_shapes():
    z = torch.randn(2, 8)
    g = dcgan.Generator(tiny_config("dcgan"))
    d = dcgan.Discriminator(tiny_config("dcgan"))
    assert g(z).shape == (2, 3, RESOLUTION, RESOLUTION)
    assert d(g(z)).shape == (2,)

    sg = stylegan.Generator(tiny_config("stylegan"))
    images = sg(torch.randn(2, 16), lambda shape: torch.randn(shape))
    assert images.shape == (2, 3, RESOLUTION, RESOLUTION)
    assert stylegan.Discriminator(tiny_config("stylegan"))(images).shape == (2,)

    x = torch.rand(2, 3, RESOLUTION, RESOLUTION) * 2 - 1
    cg = cyclegan.CycleGAN(tiny_config("cyclegan"))
    assert cg.a_to_b(x).shape == x.shape and cg.b_to_a(x).shape == x.shape
    assert cyclegan.PatchDiscriminator(tiny_config("cyclegan"))(x).dim() == 4

    model = vae.VAE(tiny_config("vae"))
    x_hat, mu, logvar = model(x, torch.randn(2, 8))
    assert x_hat.shape == x.shape and mu.shape == logvar.shape == (2, 8)
    spatial = vae.VAE(tiny_config("vae", latent="spatial", latent_channels=4, downsample=2))
    assert spatial.latent_shape == (4, 4, 4)
    assert spatial.decode(torch.randn(2, 4, 4, 4)).shape == x.shape

    hierarchical = nvae.NVAE(tiny_config("nvae"))
    x_hat, kls = hierarchical(x, generator=torch.Generator().manual_seed(0))
    assert x_hat.shape == x.shape
    assert len(kls) == 2 and all(k.shape == (2,) and (k >= 0).all() for k in kls)


def test_kl_terms_match_the_closed_forms():
    mu, logvar = torch.tensor([[0.5, -1.0]]), torch.tensor([[0.2, -0.3]])
    by_hand = 0.5 * sum(
        m**2 + np.exp(v) - 1 - v for m, v in zip([0.5, -1.0], [0.2, -0.3], strict=True)
    )
    assert vae.kl_to_standard_normal(mu, logvar).item() == pytest.approx(by_hand, rel=1e-5)
    # residual KL(N(mp + dmu, sp^2 ds^2) || N(mp, sp^2)) against torch.distributions
    p_logvar = torch.tensor([[0.4]])
    dmu, dlogvar = torch.tensor([[0.3]]), torch.tensor([[-0.2]])
    q = torch.distributions.Normal(1.0 + dmu, torch.exp(0.5 * (p_logvar + dlogvar)))
    p = torch.distributions.Normal(torch.tensor([[1.0]]), torch.exp(0.5 * p_logvar))
    expected = torch.distributions.kl_divergence(q, p).sum().item()
    assert nvae.residual_kl(dmu, dlogvar, p_logvar).item() == pytest.approx(expected, rel=1e-5)


# -- through the model folder ---------------------------------------------------------------------
@pytest.mark.parametrize("family", GENERATIVE)
def test_sampling_round_trip_is_deterministic(family, tmp_path):
    folder = save_random_model(family, tmp_path / family)
    resolved = resolve_model(str(folder))
    assert resolved.family == family and resolved.layout == "native"
    ctx = RecordingContext()
    batch = run(folder, ctx, seed=7, batch_size=3)
    assert [im.size for im in batch.images] == [(RESOLUTION, RESOLUTION)] * 3
    assert [m["seed"] for m in batch.metadata] == [7, 8, 9]
    assert all(m["family"] == family for m in batch.metadata)
    assert ctx.of_type("Progress")[-1].step == 3
    again = run(folder, seed=7, batch_size=3)
    assert all(same_pictures(a, b) for a, b in zip(batch.images, again.images, strict=True))
    # image i of a batch is the single image made with seed + i
    single = run(folder, seed=8, batch_size=1)
    assert same_pictures(single.images[0], batch.images[1], tolerance=1)
    other = run(folder, seed=1234, batch_size=1)
    assert not same_pictures(other.images[0], batch.images[0])


def test_cyclegan_translates_a_picture_of_any_size_in_tiles(tmp_path, picture):
    folder = save_random_model("cyclegan", tmp_path / "cg")
    ctx = RecordingContext()
    result = run(folder, ctx, init_image=str(picture), extras={"tile": 32, "tile_overlap": 8})
    assert result.images[0].size == (40, 36)
    assert ctx.of_type("Progress")[-1].total == 4  # 2 x 2 overlapping tiles
    back = run(folder, init_image=str(picture), extras={"direction": "b2a"})
    assert not same_pictures(back.images[0], result.images[0])
    with pytest.raises(InputError, match="drop one onto the canvas"):
        run(folder)
    with pytest.raises(InputError, match="direction"):
        run(folder, init_image=str(picture), extras={"direction": "sideways"})


def test_tiles_cover_the_picture_and_match_a_single_pass_when_one_tile_fits():
    model = cyclegan.CycleGAN(tiny_config("cyclegan")).eval()
    x = torch.rand(1, 3, 24, 28) * 2 - 1
    with torch.no_grad():
        whole = cyclegan.translate_padded(model.a_to_b, x)
        tiled = cyclegan.translate_tiled(model.a_to_b, x, 64, 16, RecordingContext())
    assert torch.allclose(whole, tiled, atol=1e-6)
    assert cyclegan.tile_starts(100, 32, 8) == [0, 24, 48, 68]
    assert cyclegan.feather(8, 8, 4).min() > 0


def test_dcgan_class_labels(tmp_path):
    folder = save_random_model("dcgan", tmp_path / "cond", classes=["cat", "dog"])
    by_name = run(folder, seed=3, batch_size=2, extras={"class_label": "dog"})
    by_index = run(folder, seed=3, batch_size=2, extras={"class_label": 1})
    other = run(folder, seed=3, batch_size=2, extras={"class_label": 0})
    assert same_pictures(by_name.images[0], by_index.images[0])
    assert not same_pictures(by_name.images[0], other.images[0])
    with pytest.raises(InputError, match="cat, dog"):
        run(folder, extras={"class_label": "bird"})
    plain = save_random_model("dcgan", tmp_path / "plain")
    with pytest.raises(InputError, match="without classes"):
        run(plain, extras={"class_label": 0})


def test_gan_interpolation_runs_between_the_two_seeds(tmp_path):
    folder = save_random_model("dcgan", tmp_path / "dc")
    walk = run(folder, seed=5, batch_size=4, extras={"interpolate_to_seed": 9})
    assert same_pictures(walk.images[0], run(folder, seed=5).images[0], tolerance=1)
    assert same_pictures(walk.images[-1], run(folder, seed=9).images[0], tolerance=1)


def test_stylegan_truncation_and_style_mixing(tmp_path):
    # per-pixel noise strengths start at zero, so a fresh model depends on w alone
    folder = save_random_model("stylegan", tmp_path / "sg")
    model = load_native_model(folder).model
    model.mapping.w_avg.copy_(torch.randn(16))  # a non-trivial mean w
    from safetensors.torch import save_file

    save_file(model.state_dict(), str(folder / "model.safetensors"))
    collapsed = run(folder, seed=1, batch_size=3, extras={"truncation": 0.0})
    assert all(same_pictures(collapsed.images[0], im, 1) for im in collapsed.images[1:])
    plain = run(folder, seed=1, batch_size=2, extras={"truncation": 1.0})
    all_from_mix = run(folder, seed=1, extras={"truncation": 1.0, "mix_seed": 2, "mix_layer": 0})
    assert same_pictures(all_from_mix.images[0], plain.images[1], tolerance=1)
    half = run(folder, seed=1, extras={"truncation": 1.0, "mix_seed": 2, "mix_layer": 2})
    assert not same_pictures(half.images[0], plain.images[0])
    assert not same_pictures(half.images[0], plain.images[1])
    with pytest.raises(InputError, match="mix_layer"):
        run(folder, extras={"mix_seed": 2, "mix_layer": 99})


def test_vae_reconstruct_interpolate_and_traverse(tmp_path, picture):
    folder = save_random_model("vae", tmp_path / "vae")
    other = picture.with_name("picture_01.png")
    recon = run(folder, init_image=str(picture), batch_size=2)
    assert not same_pictures(recon.images[0], recon.images[1])  # mean, then a posterior sample
    walk = run(
        folder, init_image=str(picture), batch_size=3, extras={"interpolate_to_image": str(other)}
    )
    assert same_pictures(walk.images[0], recon.images[0], tolerance=1)
    assert same_pictures(walk.images[-1], run(folder, init_image=str(other)).images[0], 1)
    traverse = run(folder, seed=2, batch_size=5, extras={"traverse_dim": 3})
    assert len(traverse.images) == 5
    assert not same_pictures(traverse.images[0], traverse.images[-1])
    with pytest.raises(InputError, match="traverse_dim"):
        run(folder, extras={"traverse_dim": 8})
    with pytest.raises(InputError, match="not a picture Easel can read"):
        bad = tmp_path / "bad.png"
        bad.write_bytes(b"nope")
        run(folder, init_image=str(bad))


def test_nvae_reconstructs_and_lower_temperature_varies_less(tmp_path, picture):
    folder = save_random_model("nvae", tmp_path / "nvae")
    recon = run(folder, init_image=str(picture), batch_size=2)
    assert [im.size for im in recon.images] == [(RESOLUTION, RESOLUTION)] * 2
    cold = run(folder, seed=1, batch_size=4, extras={"temperature": 0.0})
    assert all(same_pictures(cold.images[0], im, 1) for im in cold.images[1:])


def test_beta_vae_defaults_to_beta_four(tmp_path):
    folder = save_random_model("beta-vae", tmp_path / "bvae")
    assert load_native_model(folder).config["beta"] == 4.0
    assert tiny_config("vae")["beta"] == 1.0


@pytest.mark.parametrize(
    ("family", "batch"), [("dcgan", 20), ("stylegan", 10), ("vae", 20), ("nvae", 20)]
)
def test_cancel_mid_sampling(family, batch, tmp_path):
    folder = save_random_model(family, tmp_path / family)
    ctx = RecordingContext(cancel_after=1)
    with pytest.raises(JobCancelled):
        run(folder, ctx, batch_size=batch)
    assert len(ctx.steps()) == 1


def test_cancel_between_cyclegan_tiles(tmp_path, picture):
    folder = save_random_model("cyclegan", tmp_path / "cg")
    ctx = RecordingContext(cancel_after=1)
    with pytest.raises(JobCancelled):
        run(folder, ctx, init_image=str(picture), extras={"tile": 32, "tile_overlap": 8})
    assert len(ctx.steps()) == 1


# -- broken folders -------------------------------------------------------------------------------
def test_broken_model_folders_get_clear_messages(tmp_path):
    folder = save_random_model("dcgan", tmp_path / "dc")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "g_width": 16}))
    with pytest.raises(ModelError, match="do not fit the dcgan architecture"):
        load_native_model(folder)
    (folder / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ModelError, match="not a readable safetensors"):
        load_native_model(folder)
    (folder / "model.safetensors").unlink()
    with pytest.raises(ModelError, match="no model.safetensors"):
        load_native_model(folder)
    (folder / "config.json").write_text(json.dumps({**config, "family": "wgan"}))
    with pytest.raises(ModelError, match="Unknown model family 'wgan'"):
        load_native_model(folder)
    (folder / "config.json").write_text(json.dumps({**config, "resolution": 48}))
    with pytest.raises(InputError, match="DCGAN works at"):
        dcgan.Generator(json.loads((folder / "config.json").read_text()))


def test_native_models_are_cached_between_jobs(tmp_path):
    folder = save_random_model("vae", tmp_path / "vae")
    ctx = RecordingContext()
    run(folder, ctx)
    second = RecordingContext()
    second.services = ctx.services
    run(folder, second)
    assert ctx.cache.loads == 1
    # weights written again (training resumed into the folder): reloaded, old copy dropped
    save_random_model("vae", folder, seed=1)
    third = RecordingContext()
    third.services = ctx.services
    run(folder, third)
    assert ctx.cache.loads == 2 and len(ctx.cache.keys()) == 1
