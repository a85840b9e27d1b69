"""The DDPM family: UNet, schedules, objective, DDPM/DDIM samplers, guidance, model folders,
cancel, and training through the shared runner."""

from __future__ import annotations

import pytest
import torch
from diffusion_tiny import TINY_SCHEDULE, TINY_UNET, save_random_model
from gan_vae_tiny import RecordingContext, same_pictures, write_pictures

from engine.api import GenerationRequest, RuntimeOptions, TrainingRequest
from engine.errors import InputError, JobCancelled
from engine.families import ddpm
from engine.families.registry import load_native_model
from engine.generate import run_generation
from engine.library.resolve import resolve_model
from engine.training.diffusion import OptimConfig, UNetStepper, diffusion_loss
from engine.training.runner import run_training


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def tiny_unet(conditioning="none", **extra) -> ddpm.UNet:
    torch.manual_seed(0)
    return ddpm.UNet(ddpm.UNetConfig(**TINY_UNET, conditioning=conditioning, **extra))


@pytest.mark.parametrize(
    ("conditioning", "extra", "cond"),
    [
        ("none", {}, None),
        ("class", {"num_classes": 3}, torch.tensor([0, 2])),
        ("text", {"cond_dim": 12}, torch.randn(2, 12)),
    ],
)
def test_unet_forward_keeps_the_shape(conditioning, extra, cond):
    model = tiny_unet(conditioning, **extra)
    x = torch.randn(2, 3, 16, 16)
    out = model(x, torch.tensor([3, 30]), cond)
    assert out.shape == x.shape and torch.isfinite(out).all()
    if conditioning != "none":  # the null condition is accepted too
        assert model(x, torch.tensor([3, 30]), None).shape == x.shape


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_schedules_fall_from_one_towards_zero(kind):
    schedule = ddpm.Schedule(ddpm.ScheduleConfig(kind=kind, timesteps=100))
    abar = schedule.alphas_cumprod
    assert (abar[1:] < abar[:-1]).all() and 0.9 < abar[0] < 1 and abar[-1] < 0.05
    assert schedule.abar(torch.tensor([-1])).item() == 1.0


def test_bad_settings_are_refused_with_a_message():
    with pytest.raises(InputError, match="schedule"):
        ddpm.ScheduleConfig(kind="quadratic")
    with pytest.raises(InputError, match="cond_dim"):
        ddpm.UNetConfig(conditioning="text")
    with pytest.raises(InputError, match="eta"):
        ddpm.ddim_sample(
            lambda x, t: x,
            ddpm.Schedule(ddpm.ScheduleConfig()),
            torch.zeros(1),
            torch.Generator(),
            eta=2.0,
        )


def test_a_few_training_steps_reduce_the_loss():
    model = tiny_unet()
    schedule = ddpm.Schedule(ddpm.ScheduleConfig(**TINY_SCHEDULE))
    x0 = torch.zeros(8, 3, 16, 16)
    x0[:, 0] = 0.8  # red pictures with a bright square: easy to learn
    x0[:, :, 4:10, 4:10] = -0.5

    def held_out_loss() -> float:
        gen = torch.Generator().manual_seed(123)
        with torch.no_grad():
            return diffusion_loss(model, schedule, x0, None, gen).item()

    before = held_out_loss()
    stepper = UNetStepper(model, schedule, OptimConfig(lr=5e-3, warmup_steps=1))
    for _ in range(15):
        stepper.step(x0)
    assert held_out_loss() < 0.6 * before


def test_ddim_needs_fewer_unet_calls_than_ddpm():
    model = tiny_unet().eval()
    schedule = ddpm.Schedule(ddpm.ScheduleConfig(**TINY_SCHEDULE))
    shape, gen = (1, 3, 16, 16), torch.Generator().manual_seed(0)
    x_ddim, ddim = ddpm.sample(model, schedule, shape, gen, sampler="DDIM", steps=8)
    x_ddpm, full = ddpm.sample(model, schedule, shape, gen, sampler="DDPM")
    assert ddim.calls == 8 and full.calls == TINY_SCHEDULE["timesteps"]
    assert x_ddim.shape == x_ddpm.shape == shape


def test_guidance_batches_both_branches_and_the_negative_changes_the_result():
    model = tiny_unet("class", num_classes=3)
    with torch.no_grad():  # zero-initialised output layers would hide the condition
        for p in model.parameters():
            if p.dim() > 1 and p.abs().sum() == 0:
                p.normal_(0, 0.05)
    schedule = ddpm.Schedule(ddpm.ScheduleConfig(**TINY_SCHEDULE))

    def draw(scale, negative=None):
        gen = torch.Generator().manual_seed(5)
        x, denoise = ddpm.sample(
            model,
            schedule,
            (1, 3, 16, 16),
            gen,
            cond=torch.tensor([1]),
            uncond=negative,
            guidance_scale=scale,
            steps=5,
        )
        return x, denoise.calls

    plain, calls = draw(1.0)
    guided, guided_calls = draw(4.0)
    negative, _ = draw(4.0, torch.tensor([2]))
    assert calls == guided_calls == 5  # guidance costs a bigger batch, not more calls
    assert not torch.allclose(plain, guided) and not torch.allclose(guided, negative)


def request(folder, **fields) -> GenerationRequest:
    fields.setdefault("steps", 6)
    fields.setdefault("sampler", "DDIM")
    return GenerationRequest(model=str(folder), runtime=RuntimeOptions(cpu_threads=1), **fields)


def test_model_folder_round_trip_and_seeded_sampling(tmp_path):
    folder = save_random_model(
        "ddpm", tmp_path / "tiny-ddpm", classes=["a", "b"], conditioning="class"
    )
    assert resolve_model(str(folder)).family == "ddpm"
    native = load_native_model(folder)
    assert native.config["unet"]["num_classes"] == 2

    first = run_generation(request(folder, seed=7, prompt="b", batch_size=2), RecordingContext())
    again = run_generation(request(folder, seed=7, prompt="b", batch_size=2), RecordingContext())
    single = run_generation(request(folder, seed=8, prompt="b"), RecordingContext())
    other = run_generation(request(folder, seed=9, prompt="b"), RecordingContext())
    assert [im.size for im in first.images] == [(16, 16), (16, 16)]
    assert all(same_pictures(a, b) for a, b in zip(first.images, again.images, strict=True))
    assert same_pictures(first.images[1], single.images[0], tolerance=1)  # image i = seed + i
    assert not same_pictures(single.images[0], other.images[0])
    with pytest.raises(InputError, match="Unknown class"):
        run_generation(request(folder, prompt="zebra"), RecordingContext())


def test_sampling_reports_every_step_and_cancels_within_one(tmp_path):
    folder = save_random_model("ddpm", tmp_path / "tiny")
    ctx = RecordingContext()
    run_generation(request(folder, steps=6), ctx)
    assert [p.step for p in ctx.steps()] == [1, 2, 3, 4, 5, 6]
    first = ctx.of_type("Progress")[0]  # the status bar says what the first seconds are
    assert (first.step, first.info["stage"]) == (0, "loading model")

    stopping = RecordingContext(cancel_after=3)
    with pytest.raises(JobCancelled):
        run_generation(request(folder, steps=6), stopping)
    assert len(stopping.steps()) == 3

    ddpm_ctx = RecordingContext()
    run_generation(request(folder, sampler="DDPM"), ddpm_ctx)
    assert ddpm_ctx.of_type("Progress")[-1].total == TINY_SCHEDULE["timesteps"]


def test_training_through_the_runner_then_generating(tmp_path):
    pictures = write_pictures(tmp_path / "pictures", count=8)
    out = tmp_path / "trained"
    extras = {"unet": TINY_UNET, "schedule": TINY_SCHEDULE, "warmup_steps": 1}
    train = TrainingRequest(
        family="ddpm",
        data_dir=str(pictures),
        out_dir=str(out),
        steps=16,
        resolution=16,
        batch_size=8,
        learning_rate=3e-3,
        sample_every=8,
        extras=extras,
        runtime=RuntimeOptions(cpu_threads=1),
    )
    ctx = RecordingContext()
    result = run_training(train, ctx)
    losses = [p.info["loss"] for p in ctx.of_type("Progress")]
    assert sum(losses[-4:]) < 0.8 * sum(losses[:4])
    assert (out / "samples").is_dir() and result.info["steps"] == 16
    image = run_generation(request(out, seed=1), RecordingContext()).images[0]
    assert image.size == (16, 16)

    stopped = tmp_path / "stopped"
    short = train.replace(out_dir=str(stopped), steps=5)
    with pytest.raises(JobCancelled):
        run_training(short, RecordingContext(cancel_after=3))
    resumed = RecordingContext()
    run_training(short.replace(resume=True), resumed)
    assert [p.step for p in resumed.of_type("Progress")] == [4, 5]


def test_metadata_names_the_sampler_that_really_ran(tmp_path):
    folder = save_random_model("ddpm", tmp_path / "tiny-ddpm")
    asked_euler = run_generation(request(folder, sampler="Euler a"), RecordingContext())
    asked_ddpm = run_generation(request(folder, sampler="DDPM", steps=3), RecordingContext())
    assert asked_euler.metadata[0]["sampler"] == "DDIM"
    assert asked_ddpm.metadata[0]["sampler"] == "DDPM"


def test_min_snr_weighting_counts_noisy_timesteps_fully_and_clean_ones_less():
    model = tiny_unet()
    schedule = ddpm.Schedule(ddpm.ScheduleConfig(**TINY_SCHEDULE))
    x0 = torch.randn(64, 3, 16, 16)

    def loss(gamma):
        with torch.no_grad():
            return diffusion_loss(
                model, schedule, x0, None, torch.Generator().manual_seed(5), gamma
            )

    plain, weighted = loss(None), loss(5.0)
    # every weight is min(SNR, 5) / SNR <= 1, and some timesteps have SNR > 5
    assert weighted < plain
    assert weighted > 0.05 * plain
    assert loss(1e9) == pytest.approx(plain.item(), rel=1e-5)  # a huge gamma is the plain loss
