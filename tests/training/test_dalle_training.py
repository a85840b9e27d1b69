"""DALL-E family training through the shared runner: a resumed run equals a straight one (cut in
the tokenizer stage and in the transformer stage), and a caption file that cannot be read is
skipped, reported, and its picture captioned from its file name instead."""

from __future__ import annotations

import json

import pytest
import torch
from dalle_tiny import TINY_EXTRAS, tiny_config, write_captioned
from gan_vae_tiny import RecordingContext

from engine.api import RuntimeOptions, TrainingRequest
from engine.errors import JobCancelled
from engine.families.registry import load_native_model
from engine.training.data import load_training_data
from engine.training.runner import run_training

STEPS = 6  # 3 tokenizer steps (TINY_EXTRAS), then 3 transformer steps


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def captioned(tmp_path_factory):
    return write_captioned(tmp_path_factory.mktemp("dalle-train") / "pictures")


def dalle_request(data, out, **fields) -> TrainingRequest:
    fields.setdefault("steps", STEPS)
    return TrainingRequest(
        family="dalle",
        data_dir=str(data),
        out_dir=str(out),
        resolution=16,
        batch_size=6,
        sample_every=1000,
        extras=dict(TINY_EXTRAS),
        runtime=RuntimeOptions(cpu_threads=1),
        **fields,
    )


@pytest.fixture(scope="module")
def straight_run(captioned, tmp_path_factory):
    out = tmp_path_factory.mktemp("straight") / "model"
    result = run_training(dalle_request(captioned, out), RecordingContext())
    return out, result


@pytest.mark.parametrize("cut_after", [2, 4], ids=["in-tokenizer-stage", "in-transformer-stage"])
def test_resume_equals_a_straight_run(captioned, straight_run, tmp_path, cut_after):
    straight, straight_result = straight_run
    stopped = tmp_path / "stopped"
    with pytest.raises(JobCancelled):
        run_training(dalle_request(captioned, stopped), RecordingContext(cancel_after=cut_after))
    state = json.loads((stopped / "checkpoint" / "state.json").read_text())
    assert state["step"] == cut_after

    resumed_ctx = RecordingContext()
    result = run_training(dalle_request(captioned, stopped, resume=True), resumed_ctx)
    assert [p.step for p in resumed_ctx.steps()] == list(range(cut_after + 1, STEPS + 1))
    assert result.info["loss_history"] == pytest.approx(straight_result.info["loss_history"])
    a = load_native_model(straight).model.state_dict()
    b = load_native_model(stopped).model.state_dict()
    assert a.keys() == b.keys()
    for key in a:  # tokenizer, codebook (EMA buffers) and transformer alike
        assert torch.allclose(a[key].float(), b[key].float(), atol=1e-6), key


def test_a_corrupt_caption_file_is_skipped_and_reported(captioned, tmp_path):
    data = tmp_path / "pictures"
    data.mkdir()
    for source in captioned.iterdir():
        (data / source.name).write_bytes(source.read_bytes())
    broken = sorted(data.glob("a_red_circle-*.txt"))[0]
    broken.write_bytes(b"\xff\xfe\x00 not text \x80\x81")
    pictures = len(list(data.glob("*.png")))

    out = tmp_path / "model"
    result = run_training(dalle_request(data, out, steps=4), RecordingContext())
    reason = "caption file skipped (not UTF-8 text); the picture is used without it"
    assert result.info["skipped"] == [f"{broken.name}: {reason}"]
    card = (out / "README.md").read_text()
    assert f"{pictures} used, 1 unreadable skipped" in card

    # the picture still trains, captioned from its file name like an uncaptioned one
    from engine.training.dalle import DalleTrainer

    loaded = load_training_data(str(data), 16)
    trainer = DalleTrainer(dalle_request(data, tmp_path / "unused"), tiny_config(), "cpu")
    trainer.attach_data(loaded)
    index = loaded.names.index(broken.stem)
    assert loaded.captions[index] == ""
    assert trainer.captions[index] == "a red circle"
    others = [c for i, c in enumerate(trainer.captions) if i != index]
    assert others == [c for i, c in enumerate(loaded.captions) if i != index]


def test_a_run_started_from_a_finished_model_keeps_its_tokenizer(captioned, straight_run, tmp_path):
    """`build_builtin_models.py dalle --init-from`: the tokenizer's codes are what the shipped
    transformer was trained on, so they stay bit for bit; the transformer goes on from the
    shipped weights (its first loss is the finished model's, not a fresh model's)."""
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "scripts" / "build_builtin_models.py"
    spec = importlib.util.spec_from_file_location("build_builtin_models", script)
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)

    finished, finished_result = straight_run
    out = tmp_path / "continued"
    request = dalle_request(captioned, out, steps=STEPS + 3, resume=True)
    builder.seed_dalle_checkpoint(out, finished, request)
    ctx = RecordingContext()
    result = run_training(request, ctx)
    assert [p.step for p in ctx.steps()] == list(range(4, STEPS + 4))  # no tokenizer steps
    before = load_native_model(finished).model.state_dict()
    after = load_native_model(out).model.state_dict()
    tokenizer = [k for k in before if k.startswith("tokenizer.")]
    assert tokenizer and all(torch.equal(before[k], after[k]) for k in tokenizer)
    moved = [
        k for k in before if k.startswith("transformer.") and not torch.equal(before[k], after[k])
    ]
    assert moved, "the transformer did not train"
    fresh_first = finished_result.info["loss_history"][3]  # a new transformer's first loss
    assert result.info["loss_history"][0] < fresh_first
