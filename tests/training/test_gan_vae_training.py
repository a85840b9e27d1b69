"""GAN/VAE training through the shared loop: learning, progress, samples, model card, cancel,
resume, refusals, the real engine and `easel train`."""

from __future__ import annotations

import json
import time

import pytest
import torch
from gan_vae_tiny import TINY, RecordingContext, write_pictures

from engine.api import GenerationRequest, RuntimeOptions, TrainingRequest
from engine.errors import InputError, JobCancelled
from engine.events import Cancelled, Preview, Progress, Result
from engine.families.registry import load_native_model
from engine.generate import run_generation
from engine.training.runner import run_training

DATA_MEAN = torch.tensor([220.0, 40.0, 40.0]) / 127.5 - 1  # write_pictures' red


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    folder = write_pictures(tmp_path_factory.mktemp("train") / "pictures", count=8)
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    return folder


def train_request(family, data, out, **fields) -> TrainingRequest:
    extras = {**TINY[family], **fields.pop("extras", {})}
    fields.setdefault("steps", 6)
    fields.setdefault("sample_every", 1000)
    return TrainingRequest(
        family=family,
        data_dir=str(data),
        data_dir_b=str(data) if family == "cyclegan" else None,
        out_dir=str(out),
        resolution=16,
        batch_size=8,
        extras=extras,
        runtime=RuntimeOptions(cpu_threads=1),
        **fields,
    )


def named_losses(ctx, key: str) -> list[float]:
    reports = ctx.of_type("Progress")
    return [p.info["loss"] if key == "loss" else p.info["losses"][key] for p in reports]


LEARNING = [
    # family, the number that must fall, steps, extra settings
    # (ratios late/early seen over seeds 0-5: dcgan 0.16-0.46, stylegan 0.28-0.80,
    # cyclegan 0.26-0.29, nvae 0.22-0.28; the thresholds leave room for other CPUs' rounding)
    ("dcgan", "d_loss", 40, {"learning_rate": 1e-3}),
    ("stylegan", "d_loss", 40, {}),
    ("cyclegan", "cycle", 30, {}),
    ("vae", "loss", 40, {}),
    ("beta-vae", "loss", 40, {}),
    ("nvae", "neg_elbo", 40, {}),
]


@pytest.mark.parametrize(("family", "key", "steps", "extras"), LEARNING)
def test_training_makes_the_loss_fall(family, key, steps, extras, pictures, tmp_path):
    ctx = RecordingContext()
    out = tmp_path / family
    result = run_training(train_request(family, pictures, out, steps=steps, extras=extras), ctx)
    losses = named_losses(ctx, key)
    quarter = len(losses) // 4
    early, late = sum(losses[:quarter]) / quarter, sum(losses[-quarter:]) / quarter
    margin = 0.9 if key == "d_loss" else 0.7  # a discriminator only has to start winning
    assert late < margin * early, f"{family} {key}: early {early:.3f}, late {late:.3f}"
    assert isinstance(result, Result) and result.info["steps"] == steps
    skipped = ["corrupt.png: not a picture"]
    if family == "cyclegan":  # the same folder serves as domain B here
        skipped.append("(B) corrupt.png: not a picture")
    assert result.info["skipped"] == skipped
    info = ctx.of_type("Progress")[-1].info
    assert info["images_per_s"] > 0 and "seconds_left" in info
    card = (out / "README.md").read_text()
    assert f"8 used, {len(skipped)} unreadable skipped" in card
    assert f"Steps: {steps} of {steps}" in card
    generated = run_generation(
        GenerationRequest(
            model=str(out),
            init_image=str(pictures / "picture_00.png") if family == "cyclegan" else None,
            runtime=RuntimeOptions(cpu_threads=1),
        ),
        RecordingContext(),
    )
    assert generated.images[0].size[0] >= 16


def test_dcgan_generator_moves_towards_the_data(pictures, tmp_path):
    """Beyond the discriminator winning: the generator's colours approach the pictures'."""
    request = train_request("dcgan", pictures, tmp_path / "dc", steps=40)
    request = request.replace(extras={**request.extras, "learning_rate": 1e-3})
    from engine.families import dcgan
    from engine.training.data import load_training_data
    from engine.training.runner import training_config

    config = training_config(request, "dcgan", load_training_data(str(pictures), 16))
    torch.manual_seed(request.seed)  # the runner seeds weight init the same way
    untrained = dcgan.Generator(config).eval()
    run_training(request, RecordingContext())
    trained = load_native_model(tmp_path / "dc").model
    z = torch.randn(64, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = (untrained(z).mean(dim=(0, 2, 3)) - DATA_MEAN).abs().mean()
        after = (trained(z).mean(dim=(0, 2, 3)) - DATA_MEAN).abs().mean()
    assert after < 0.95 * before, (before, after)  # seeds 0-4 gave 0.76-0.89


def test_sample_grids_go_to_previews_and_the_samples_folder(pictures, tmp_path):
    ctx = RecordingContext()
    run_training(train_request("vae", pictures, tmp_path / "v", steps=4, sample_every=2), ctx)
    names = sorted(p.name for p in (tmp_path / "v" / "samples").iterdir())
    assert names == ["final.png", "step_0000002.png", "step_0000004.png"]
    previews = ctx.of_type("Preview")
    assert len(previews) == 2 and previews[0].image.size[0] > 16  # a grid, not one picture


def test_cancel_saves_a_checkpoint_and_resume_continues_exactly(pictures, tmp_path):
    straight = tmp_path / "straight"
    run_training(train_request("dcgan", pictures, straight, steps=6), RecordingContext())

    stopped = tmp_path / "stopped"
    ctx = RecordingContext(cancel_after=3)
    with pytest.raises(JobCancelled):
        run_training(train_request("dcgan", pictures, stopped, steps=6), ctx)
    state = json.loads((stopped / "checkpoint" / "state.json").read_text())
    assert state["step"] == 3
    assert "stopped early" in (stopped / "README.md").read_text()
    usable = run_generation(GenerationRequest(model=str(stopped)), RecordingContext())
    assert len(usable.images) == 1

    resumed_ctx = RecordingContext()
    result = run_training(
        train_request("dcgan", pictures, stopped, steps=6, resume=True), resumed_ctx
    )
    assert [p.step for p in resumed_ctx.of_type("Progress")] == [4, 5, 6]
    assert len(result.info["loss_history"]) == 6
    a = load_native_model(straight).model.state_dict()
    b = load_native_model(stopped).model.state_dict()
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)


def test_requests_that_cannot_run_are_refused(pictures, tmp_path):
    out = tmp_path / "used"
    run_training(train_request("vae", pictures, out, steps=1), RecordingContext())
    with pytest.raises(InputError, match="already holds a trained model"):
        run_training(train_request("vae", pictures, out, steps=2), RecordingContext())
    with pytest.raises(InputError, match="trains a vae model, not dcgan"):
        run_training(train_request("dcgan", pictures, out, resume=True), RecordingContext())
    with pytest.raises(InputError, match="no checkpoint to resume"):
        run_training(
            train_request("vae", pictures, tmp_path / "new", resume=True), RecordingContext()
        )
    with pytest.raises(InputError, match="Unknown setting.*latent_size"):
        run_training(
            train_request("vae", pictures, tmp_path / "x", extras={"latent_size": 3}),
            RecordingContext(),
        )
    with pytest.raises(InputError, match="second folder"):
        bad = train_request("cyclegan", pictures, tmp_path / "cg").replace(data_dir_b=None)
        run_training(bad, RecordingContext())
    with pytest.raises(InputError, match="DCGAN works at"):
        run_training(
            train_request("dcgan", pictures, tmp_path / "r").replace(resolution=24),
            RecordingContext(),
        )
    with pytest.raises(InputError, match="cannot train the family 'gan'"):
        run_training(
            train_request("dcgan", pictures, tmp_path / "g").replace(family="gan"),
            RecordingContext(),
        )


def test_class_folders_train_a_conditional_dcgan(tmp_path):
    write_pictures(tmp_path / "data" / "apples", count=4)
    write_pictures(tmp_path / "data" / "cherries", count=4, seed=2)
    out = tmp_path / "cond"
    run_training(train_request("dcgan", tmp_path / "data", out, steps=2), RecordingContext())
    assert load_native_model(out).config["classes"] == ["apples", "cherries"]
    result = run_generation(
        GenerationRequest(model=str(out), extras={"class_label": "cherries"}), RecordingContext()
    )
    assert len(result.images) == 1


def test_training_through_the_engine(engine, pictures, tmp_path):
    events = []
    engine.subscribe(events.append)
    out = tmp_path / "engine-vae"
    final = engine.run(train_request("vae", pictures, out, steps=4, sample_every=2), timeout=120)
    assert isinstance(final, Result), final
    kinds = {type(e) for e in events}
    assert {Progress, Preview, Result} <= kinds
    sampled = engine.run(GenerationRequest(model=str(out), batch_size=2, seed=4), timeout=60)
    assert isinstance(sampled, Result) and len(sampled.images) == 2

    cancelled_out = tmp_path / "engine-cancel"
    job = engine.submit(train_request("vae", pictures, cancelled_out, steps=100000))
    wait_for(lambda: any(isinstance(e, Progress) and e.job_id == job for e in events))
    engine.cancel(job)
    wait_for(lambda: any(isinstance(e, Cancelled) and e.job_id == job for e in events))
    assert (cancelled_out / "checkpoint" / "state.json").is_file()


def wait_for(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_cancel_before_the_first_step_leaves_nothing_behind(pictures, tmp_path):
    ctx = RecordingContext()
    ctx.cancel_event.set()
    with pytest.raises(JobCancelled):
        run_training(train_request("vae", pictures, tmp_path / "none"), ctx)
    assert not (tmp_path / "none" / "checkpoint").exists()
    assert not (tmp_path / "none" / "config.json").exists()


def test_dcgan_ships_the_generator_average_and_resumes_checkpoints_made_before_it(
    pictures, tmp_path
):
    from safetensors.torch import load_file, save_file

    out = tmp_path / "dc"
    ctx = RecordingContext(cancel_after=4)
    with pytest.raises(JobCancelled):
        run_training(train_request("dcgan", pictures, out, steps=8), ctx)
    tensors = load_file(str(out / "checkpoint" / "state.safetensors"))
    raw = {
        k.removeprefix("module.generator."): v
        for k, v in tensors.items()
        if k.startswith("module.generator.")
    }
    average = {
        k.removeprefix("module.generator_ema."): v
        for k, v in tensors.items()
        if k.startswith("module.generator_ema.")
    }
    assert raw.keys() == average.keys()
    assert any(not torch.equal(raw[k], average[k]) for k in raw)  # an average, not a copy
    shipped = load_native_model(out).model.state_dict()
    assert all(torch.equal(shipped[k], average[k]) for k in shipped)

    # a run saved before the average existed: it starts at the saved generator
    old = {k: v for k, v in tensors.items() if not k.startswith("module.generator_ema.")}
    save_file(old, str(out / "checkpoint" / "state.safetensors"))
    run_training(train_request("dcgan", pictures, out, steps=8, resume=True), RecordingContext())
    assert load_native_model(out).model is not None
