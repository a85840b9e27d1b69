"""The learning-rate cool-down of the diffusion UNets (warmup-stable-decay): the rate warms up,
holds, then falls linearly to 0 at the run's last step; a run with it resumes exactly; a bad
setting is one clear message."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from diffusion_tiny import ldm_training_request, tiny_config
from gan_vae_tiny import RecordingContext, write_pictures

from engine.api import TrainingRequest
from engine.errors import InputError, JobCancelled
from engine.families.registry import load_native_model
from engine.training.diffusion import DDPMTrainer, OptimConfig
from engine.training.runner import run_training


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def test_the_rate_warms_up_holds_then_falls_to_zero_at_the_end():
    optim = OptimConfig(lr=1.0, warmup_steps=4, decay_steps=10, decay_end=30)
    factors = [optim.lr_factor(step) for step in range(30)]
    assert factors[:4] == [0.25, 0.5, 0.75, 1.0]  # warm-up
    assert factors[4:20] == [1.0] * 16  # stable
    assert factors[20] == 1.0 and factors[25] == pytest.approx(0.5)
    assert factors[29] == pytest.approx(0.1)  # the last step still learns a little
    assert optim.lr_factor(30) == 0.0 and optim.lr_factor(40) == 0.0  # past the end: nothing
    # off by default: constant after the warm-up, however long the run
    assert OptimConfig(lr=1.0, warmup_steps=4).lr_factor(10**6) == 1.0
    # a continued run warms up again from where it restarted, and still cools down on time
    continued = OptimConfig(lr=1.0, warmup_steps=4, decay_steps=10, decay_end=30)
    assert continued.lr_factor(12, warmup_from=12) == 0.25
    assert continued.lr_factor(29, warmup_from=12) == pytest.approx(0.1)


def ddpm_trainer(steps: int, **settings) -> DDPMTrainer:
    request = TrainingRequest(family="ddpm", data_dir=".", out_dir=".", steps=steps)
    config = tiny_config("ddpm", learning_rate=1e-3, warmup_steps=1, **settings)
    return DDPMTrainer(request, config, torch.device("cpu"))


def rates_of_a_run(trainer: DDPMTrainer, steps: int) -> list[float]:
    batch = SimpleNamespace(images=torch.rand(4, 3, 16, 16) * 2 - 1, labels=None, captions=[])
    rates = []
    for trainer.step in range(steps):
        trainer.train_step(batch)
        rates.append(trainer.stepper.optimizer.param_groups[0]["lr"])
    return rates


def test_the_trainer_cools_down_over_the_runs_last_steps():
    cooled = rates_of_a_run(ddpm_trainer(8, lr_decay_steps=4), 8)
    assert cooled[:4] == pytest.approx([1e-3] * 4)
    assert cooled[4:] == pytest.approx([1e-3, 7.5e-4, 5e-4, 2.5e-4])
    assert rates_of_a_run(ddpm_trainer(8), 8) == pytest.approx([1e-3] * 8)  # off by default


@pytest.mark.parametrize("bad", [0, -5, 2.5, "soon", True])
def test_a_bad_cool_down_setting_says_what_it_must_be(bad):
    with pytest.raises(InputError, match="lr_decay_steps must be a whole number"):
        ddpm_trainer(8, lr_decay_steps=bad)


def test_an_ldm_run_with_a_cool_down_resumes_exactly(tmp_path):
    pictures = write_pictures(tmp_path / "pictures", count=6)
    cool = {"lr_decay_steps": 3}
    straight = tmp_path / "straight"
    run_training(ldm_training_request(pictures, straight, extras=cool), RecordingContext())
    constant = tmp_path / "constant"
    run_training(ldm_training_request(pictures, constant), RecordingContext())
    stopped = tmp_path / "stopped"
    with pytest.raises(JobCancelled):
        run_training(
            ldm_training_request(pictures, stopped, extras=cool), RecordingContext(cancel_after=6)
        )
    run_training(
        ldm_training_request(pictures, stopped, extras=cool, resume=True), RecordingContext()
    )
    a, b, c = (load_native_model(d).model.state_dict() for d in (straight, stopped, constant))
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)
    unet = [k for k in a if k.startswith("unet.")]
    assert any(not torch.allclose(a[k].float(), c[k].float()) for k in unet)  # it changed them
