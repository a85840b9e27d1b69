"""Crash safety, measured: SIGKILL the real app, the CLI and training at random moments
(scripts/crash_check.py; docs/reliability.md records a 50-kill run), and the recovery pieces
on their own."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
from PIL import Image

from engine.gallery_recovery import recover_gallery
from engine.history import HistoryStore
from engine.metadata import save_png_with_metadata

REPO = Path(__file__).resolve().parents[1]


def crash_check():
    spec = importlib.util.spec_from_file_location("crash_check", REPO / "scripts/crash_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["crash_check"] = module  # dataclasses look their module up while defining
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_random_kills_of_app_cli_and_training_lose_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("EASEL_DATA_DIR", str(tmp_path / "checker"))
    outcomes = crash_check().run_checks(
        kills=8, modes=["app", "cli", "train", "app-train"], seed=1, work=tmp_path
    )
    assert [o.problems for o in outcomes] == [[]] * len(outcomes)
    assert outcomes[-1].mode == "train-resume"


def test_a_picture_written_without_its_row_is_adopted_at_start(tmp_path):
    store = HistoryStore(tmp_path / "db.sqlite3", tmp_path / "gallery")
    kept = store.add(Image.new("RGB", (8, 8), "red"), {"prompt": "kept"})
    # what a kill between the PNG write and the INSERT leaves behind
    orphan = store.folder / "20261202-101010-abcdef123456-1.png"
    save_png_with_metadata(Image.new("RGB", (8, 8), "blue"), orphan, {"prompt": "orphan"})
    stale = store.folder / ".20261202-101010-x.png.abc.tmp"
    stale.write_bytes(b"half")
    report = recover_gallery(store, now=stale.stat().st_mtime + 3600)
    assert (report.adopted, report.temp_removed) == (1, 1)
    entries = {e.prompt: e for e in store.entries()}
    assert set(entries) == {"kept", "orphan"} and entries["kept"].id == kept.id
    adopted = entries["orphan"]
    assert (adopted.batch_id, adopted.batch_index) == ("abcdef123456", 1)
    assert adopted.thumb_path.is_file() and not stale.exists()
    assert recover_gallery(store).adopted == 0  # once only


def test_checkpoint_counters_travel_with_their_tensors(tmp_path):
    import torch

    from engine.training import checkpoint

    checkpoint.save_checkpoint(tmp_path, {"w": torch.ones(2)}, {"step": 10})
    # a kill after the tensors of step 20 but before state.json leaves step 10's json behind
    json_copy = (tmp_path / checkpoint.CHECKPOINT_DIR / checkpoint.STATE_JSON).read_text()
    checkpoint.save_checkpoint(tmp_path, {"w": torch.full((2,), 2.0)}, {"step": 20})
    (tmp_path / checkpoint.CHECKPOINT_DIR / checkpoint.STATE_JSON).write_text(json_copy)
    tensors, counters = checkpoint.load_checkpoint(tmp_path)
    assert counters["step"] == 20 and tensors["w"][0] == 2.0
    assert json.loads(json_copy)["step"] == 10
