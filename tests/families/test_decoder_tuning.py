"""Decoder tuning for latent diffusion: the decoder learns, the encoder (and so the latent space
the UNet knows) stays bit for bit; the trainer tunes it beside the UNet and resumes exactly; a
grown decoder (wider, more blocks) loads and draws."""

from __future__ import annotations

import pytest
import torch
from diffusion_tiny import TINY_AE, ldm_training_request, save_random_model
from gan_vae_tiny import RecordingContext, write_pictures

from engine.api import GenerationRequest, RuntimeOptions, TrainingRequest
from engine.errors import JobCancelled
from engine.families.ldm import Autoencoder, AutoencoderConfig
from engine.families.registry import load_native_model
from engine.generate import run_generation
from engine.training.decoder_tuning import DecoderTuning, edge_loss, tune_decoder
from engine.training.diffusion import AutoencoderStepper
from engine.training.runner import run_training


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def squares(count: int = 24, side: int = 16) -> torch.Tensor:
    """Pictures with hard edges: a coloured square on a plain ground, in [-1, 1]."""
    g = torch.Generator().manual_seed(3)
    images = torch.full((count, 3, side, side), -1.0)
    for i in range(count):
        y, x = torch.randint(0, side // 2, (2,), generator=g).tolist()
        colour = torch.rand(3, 1, 1, generator=g) * 2 - 1
        images[i, :, y : y + side // 2, x : x + side // 2] = colour
    return images


def test_edge_loss_sees_blur_that_leaves_the_mean_alone():
    sharp = squares(4)
    blurred = torch.nn.functional.avg_pool2d(sharp, 3, stride=1, padding=1)
    assert edge_loss(sharp, sharp) == 0
    assert edge_loss(blurred, sharp) > 0.01


def test_tuning_lowers_reconstruction_error_and_leaves_the_encoder_alone():
    torch.manual_seed(0)
    ae = Autoencoder(AutoencoderConfig(channels=(8, 16), latent_channels=4))
    images = squares()
    stepper = AutoencoderStepper(ae, lr=1e-3)
    for _ in range(20):  # a briefly trained autoencoder, as the LDM trainer leaves it
        stepper.step(images[:8])
    encoder_before = {k: v.clone() for k, v in ae.encoder.state_dict().items()}

    tuning = DecoderTuning(steps=120, lr=2e-3, batch=8, warmup_steps=5, ema_decay=0.9)
    summary = tune_decoder(ae, images, tuning)

    assert summary["probe_mse_after"] < 0.8 * summary["probe_mse_before"]
    encoder_after = ae.encoder.state_dict()
    assert all(torch.equal(encoder_before[k], encoder_after[k]) for k in encoder_before)
    assert not any(p.requires_grad for p in ae.parameters())  # ready to sample, not to train


def ldm_request(pictures, out, **fields) -> TrainingRequest:
    extras = {"ae_steps": 3, **fields.pop("extras", {})}
    return ldm_training_request(pictures, out, steps=7, extras=extras, **fields)


def decoder_weights(folder) -> dict:
    state = load_native_model(folder).model.autoencoder.decoder.state_dict()
    return {k: v.float() for k, v in state.items()}


def test_the_trainer_tunes_the_decoder_beside_the_unet_and_resumes_exactly(tmp_path):
    pictures = write_pictures(tmp_path / "pictures", count=6)
    on = {"decoder_tuning_edge_weight": 1.0}
    straight = tmp_path / "straight"
    ctx = RecordingContext()
    run_training(ldm_request(pictures, straight, extras=on), ctx)
    losses = [p.info["losses"] for p in ctx.of_type("Progress")]
    assert "decoder_loss" not in losses[2] and "decoder_loss" in losses[3]  # after the AE phase

    untuned = tmp_path / "untuned"  # the default: the decoder stops with the encoder
    run_training(ldm_request(pictures, untuned), RecordingContext())
    a, b = decoder_weights(straight), decoder_weights(untuned)
    assert any(not torch.allclose(a[k], b[k]) for k in a)  # the shipped decoder is the tuned one

    stopped = tmp_path / "stopped"
    with pytest.raises(JobCancelled):
        run_training(ldm_request(pictures, stopped, extras=on), RecordingContext(cancel_after=5))
    run_training(ldm_request(pictures, stopped, extras=on, resume=True), RecordingContext())
    a = load_native_model(straight).model.state_dict()
    b = load_native_model(stopped).model.state_dict()
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)


def test_a_grown_decoder_loads_and_draws(tmp_path):
    grown = {**TINY_AE, "decoder_channels": [12, 16], "decoder_blocks": 2}
    folder = save_random_model("ldm", tmp_path / "grown", conditioning="text", autoencoder=grown)
    decoder = load_native_model(folder).model.autoencoder.decoder
    assert sum(type(m).__name__ == "_Res" for m in decoder) == 4
    request = GenerationRequest(
        model=str(folder), prompt="a red square", steps=3, runtime=RuntimeOptions(cpu_threads=1)
    )
    assert run_generation(request, RecordingContext()).images[0].size == (16, 16)
    # the layout every older model has: one residual block per level, at the encoder's widths
    plain = Autoencoder(AutoencoderConfig(channels=(8, 8))).decoder
    assert [type(m).__name__ for m in plain] == [
        "Conv2d", "_Res", "Upsample", "Conv2d", "_Res", "GroupNorm", "SiLU", "Conv2d",
        "PixelShuffle",
    ]  # fmt: skip


def test_a_replaced_decoder_learns_on_crops_from_the_frozen_latents():
    from engine.training.decoder_tuning import reconstruction_error, replace_decoder

    torch.manual_seed(1)
    ae = Autoencoder(AutoencoderConfig(channels=(8, 16), latent_channels=4))
    images = squares()
    replace_decoder(ae, (12, 24), blocks=2)
    assert ae.config.decoder_blocks == 2 and ae.decoder[0].out_channels == 24
    fresh = reconstruction_error(ae, images)
    tuning = DecoderTuning(steps=80, lr=2e-3, batch=8, warmup_steps=5, crop=2, whole_from=0.75)
    summary = tune_decoder(ae, images, tuning)
    assert summary["probe_mse_before"] == pytest.approx(fresh)
    assert summary["probe_mse_after"] < 0.5 * fresh
