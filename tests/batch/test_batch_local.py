"""`easel batch` on the in-process engine with the built-in model: the same pixels as single
`easel generate` runs, a failing request recorded while the rest are made, a run killed
mid-batch resumed without duplicates or gaps, and a crash-torn manifest repaired."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from engine.api import GenerationRequest
from engine.batch.manifest import MANIFEST_NAME, Manifest, read_rows
from engine.batch.spec import load_spec
from engine.cli import main as cli_main
from engine.errors import InputError
from tests.batch.helpers import (
    COMMON,
    PROMPTS,
    SEEDS,
    done_rows,
    images_by_request,
    pixels,
    write_grid,
)
from tests.helpers.signals import sigint_reaches_child

REPO = Path(__file__).resolve().parents[2]


def batch(spec: Path, out: Path, *extra: str) -> int:
    return cli_main(["batch", str(spec), "-o", str(out), "--threads", "1", "--quiet", *extra])


def test_a_local_batch_makes_the_images_single_generate_runs_make(tmp_path, capsys):
    out = tmp_path / "out"
    assert batch(write_grid(tmp_path), out) == 0
    rows = done_rows(out)
    assert len(rows) == len(PROMPTS) * len(SEEDS) == 12
    assert sorted(p.name for p in out.glob("*.png")) == sorted(r["file"] for r in rows)
    assert {r["device"] for r in rows} == {"cpu"} and all(r["worker"] for r in rows)
    made = images_by_request(out)
    for prompt in PROMPTS:
        for seed in SEEDS:
            single = tmp_path / f"single-{seed}.png"
            code = cli_main([
                "generate", prompt, "--model", "builtin:emoji-ldm", "--steps", "4",
                "--sampler", "DDIM", "--width", "64", "--height", "64", "--cfg", "3",
                "--seed", str(seed), "--threads", "1", "--quiet", "-o", str(single),
            ])  # fmt: skip
            assert code == 0
            assert np.array_equal(made[(prompt, seed)], pixels(single)), (prompt, seed)
    # each PNG carries the full request: reuse settings works on batch output
    from engine.metadata import read_generation_metadata

    first = read_generation_metadata(out / rows[0]["file"])
    assert (first.prompt, first.seed, first.steps) == (PROMPTS[0], SEEDS[0], 4)
    assert "12 made, 0 failed, 0 already done" in capsys.readouterr().err
    # a rerun finds everything done and makes nothing
    assert batch(write_grid(tmp_path), out) == 0
    assert len(read_rows(out)) == 12
    assert "0 made, 0 failed, 12 already done" in capsys.readouterr().err


def test_a_failing_request_is_recorded_and_the_rest_are_made(tmp_path, capsys):
    good = [GenerationRequest(prompt="a rocket", seed=s, model="builtin:emoji-ldm", **COMMON)
            for s in (1, 2)]  # fmt: skip
    missing = GenerationRequest(prompt="x", seed=1, model=str(tmp_path / "nope"), **COMMON)
    spec = tmp_path / "spec.jsonl"
    lines = [json.dumps(r.to_dict()) for r in (good[0], missing, good[1])]
    spec.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    assert batch(spec, out) == 1  # some failed
    rows = {row["index"]: row for row in read_rows(out)}
    assert rows[0]["status"] == rows[2]["status"] == "done"
    assert rows[1]["status"] == "failed" and rows[1]["file"] is None
    assert rows[1]["error_kind"] == "ModelError" and "Model not found" in rows[1]["error"]
    assert len(list(out.glob("*.png"))) == 2
    err = capsys.readouterr().err
    assert "2 made, 1 failed" in err and "Traceback" not in err


def test_a_killed_batch_resumes_with_no_duplicates_and_nothing_missing(tmp_path):
    spec = write_grid(tmp_path)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "desktop.cli", "batch", str(spec), "-o", str(out),
               "--threads", "1", "--quiet"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while len(done_rows(out)) < 3:
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "the batch made no progress"
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait(30)
    finally:
        if process.poll() is None:
            process.kill()
        process.stderr.close()
    made_before = len(done_rows(out))
    assert 3 <= made_before < 12, "kill the run mid-batch, not after it"
    assert batch(spec, out) == 0
    keys = [row["key"] for row in done_rows(out)]
    assert len(keys) == len(set(keys)) == 12  # every request once
    assert {item.key for item in load_spec(spec)} == set(keys)
    assert len(list(out.glob("*.png"))) == 12
    assert not list(out.glob(".*.tmp")), "half-written files of the killed run are gone"


def test_a_torn_last_line_is_cut_off_and_the_item_made_again(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "00000-aaaaaaaaaaaa.png").write_bytes(b"png")
    row = {"key": "k0", "index": 0, "status": "done", "file": "00000-aaaaaaaaaaaa.png"}
    (out / MANIFEST_NAME).write_text(json.dumps(row) + '\n{"key": "k1", "sta', encoding="utf-8")
    with Manifest(out) as manifest:
        assert manifest.is_done("k0") and not manifest.is_done("k1")
        manifest.append({"key": "k1", "status": "done", "file": "00000-aaaaaaaaaaaa.png"})
    assert [r["key"] for r in read_rows(out)] == ["k0", "k1"]  # no half row left between them


def test_two_runs_cannot_write_one_folder_at_once(tmp_path):
    with Manifest(tmp_path / "out"):
        with pytest.raises(InputError, match="Another batch is writing"):
            Manifest(tmp_path / "out")
    Manifest(tmp_path / "out").close()  # free again once the first run is over


def test_eval_takes_batch_outdirs_as_image_sets(tmp_path, capsys):
    """FID/KID of whole runs: the manifest's images, not the manifest or stray files."""
    from engine.metrics.images import list_images

    runs = []
    for name, prompts in (("apples", ("a red apple",)), ("rockets", ("a rocket",))):
        folder = tmp_path / name
        folder.mkdir()
        assert batch(write_grid(folder, prompts=prompts, seeds=(1, 2, 3)), folder / "out") == 0
        runs.append(folder / "out")
    (runs[0] / "notes.txt").write_text("not an image", encoding="utf-8")
    (runs[0] / "stray.png").write_bytes((runs[1] / done_rows(runs[1])[0]["file"]).read_bytes())
    listed = list_images([runs[0]])
    assert [p.name for p in listed] == [row["file"] for row in done_rows(runs[0])]
    assert list_images([runs[0] / MANIFEST_NAME]) == listed
    capsys.readouterr()
    code = cli_main(["eval", str(runs[0]), str(runs[1]), "--kid-subset-size", "3", "--threads",
                     "1", "--quiet"])  # fmt: skip
    assert code == 0
    fid = float(capsys.readouterr().out.split()[1])
    assert np.isfinite(fid) and fid > 0


def test_ctrl_c_stops_cleanly_and_a_rerun_finishes(tmp_path):
    spec = write_grid(tmp_path, seeds=tuple(range(1, 11)))  # 30 images: still running at Ctrl-C
    out = tmp_path / "out"
    command = [sys.executable, "-m", "desktop.cli", "batch", str(spec), "-o", str(out),
               "--threads", "1", "--quiet"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        command, env=env, stderr=subprocess.PIPE, text=True, preexec_fn=sigint_reaches_child
    )
    try:
        deadline = time.monotonic() + 240
        while len(done_rows(out)) < 2:
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130
    assert "rerun the same command to go on" in err and "Traceback" not in err
    rows = read_rows(out)
    assert all(row["status"] == "done" for row in rows) and len(rows) < 30
    assert len(list(out.glob("*.png"))) == len(rows)  # every row has its PNG, no strays
    assert batch(spec, out) == 0 and len(done_rows(out)) == 30


def test_bad_command_lines_get_one_message(tmp_path, capsys):
    assert batch(tmp_path / "missing.toml", tmp_path / "out") == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "out-file").write_text("x", encoding="utf-8")
    assert batch(write_grid(tmp_path), tmp_path / "out-file") in (2, 4)
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
