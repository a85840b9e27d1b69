"""The evaluate job end to end: real engine, real FID network, and `easel eval` on the CLI."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

from engine.api import EvaluateRequest, RuntimeOptions, request_from_dict
from engine.cli import main as cli_main
from engine.errors import InputError
from engine.events import Failed, Progress, Result
from tests.understanding.conftest import save_crops

#: the build machine is shared: two torch threads collapse when another process holds a core
ONE_THREAD = RuntimeOptions(cpu_threads=1)


@pytest.fixture(scope="module")
def tiny_sets(sample_photos, tmp_path_factory):
    """Three china crops against three flower crops, sizes and modes mixed."""
    root = tmp_path_factory.mktemp("tiny-sets")
    save_crops(sample_photos["china"], root / "a", 3, seed=11, modes=("RGB", "P", "RGBA"))
    save_crops(sample_photos["flower"], root / "b", 3, seed=12, modes=("L", "I;16", "RGB"))
    return root / "a", root / "b"


def test_request_round_trips_and_validates():
    request = EvaluateRequest(set_a="folder-a", set_b=["x.png", "y.png"], seed=4)
    assert request.set_a == ("folder-a",)
    assert request_from_dict(request.to_dict()) == request
    with pytest.raises(InputError, match="two sets"):
        EvaluateRequest(set_a="a", set_b="")
    with pytest.raises(InputError, match="Batch size"):
        EvaluateRequest(set_a="a", set_b="b", batch_size=0)


def test_engine_runs_evaluate_with_progress(engine, tiny_sets):
    events = []
    engine.subscribe(events.append)
    request = EvaluateRequest(
        set_a=str(tiny_sets[0]), set_b=str(tiny_sets[1]), batch_size=2, runtime=ONE_THREAD
    )
    final = engine.run(request)
    assert isinstance(final, Result), getattr(final, "message", final)
    info = final.info
    assert info["count_a"] == info["count_b"] == 3
    assert info["fid"] > 0 and np.isfinite(info["kid"])
    assert info["warnings"] and "biased" in info["warnings"][0]
    steps = [e.step for e in events if isinstance(e, Progress)]
    assert steps[0] == 0 and steps[-1] == 6 and steps == sorted(steps)


def test_engine_reports_bad_sets_clearly(engine, tiny_sets, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    final = engine.run(EvaluateRequest(set_a=str(empty), set_b=str(tiny_sets[1])))
    assert isinstance(final, Failed) and final.kind == "InputError"
    assert "Set A has no images" in final.message
    single = next(tiny_sets[0].iterdir())
    final = engine.run(EvaluateRequest(set_a=str(single), set_b=str(tiny_sets[1])))
    assert isinstance(final, Failed) and "at least 2 images per set" in final.message


def test_cli_prints_fid_and_kid_lines(tiny_sets, capsys):
    code = cli_main(
        ["eval", str(tiny_sets[0]), str(tiny_sets[1]), "--batch-size", "3", "--threads", "1"]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    lines = out.strip().splitlines()
    assert re.fullmatch(r"FID \d+\.\d+", lines[0]) and float(lines[0].split()[1]) > 0
    assert re.fullmatch(r"KID -?\d+\.\d+", lines[1])
    assert "[6/6]" in err and "warning:" in err


def test_cli_exit_code_for_empty_folder(tmp_path, tiny_sets, capsys):
    (tmp_path / "empty").mkdir()
    code = cli_main(["eval", str(tmp_path / "empty"), str(tiny_sets[1]), "--quiet"])
    _, err = capsys.readouterr()
    assert code == InputError.exit_code
    assert "has no images" in err


def test_features_are_cached_until_a_set_changes(engine, tiny_sets):
    request = EvaluateRequest(
        set_a=str(tiny_sets[0]), set_b=str(tiny_sets[1]), batch_size=3, runtime=ONE_THREAD
    )
    first = engine.run(request)
    assert isinstance(first, Result) and first.info["cached_sets"] == []
    stages = []
    engine.subscribe(lambda e: isinstance(e, Progress) and stages.append(e.info.get("stage")))
    again = engine.run(request)
    assert again.info["cached_sets"] == ["A", "B"]
    assert again.info["fid"] == first.info["fid"] and again.info["kid"] == first.info["kid"]
    assert "Set A" not in stages and "Set B" not in stages  # nothing was extracted
    image = sorted(tiny_sets[0].iterdir())[0]
    stat = image.stat()
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # "edited"
    changed = engine.run(request)
    assert changed.info["cached_sets"] == ["B"]
    assert changed.info["fid"] == pytest.approx(first.info["fid"], rel=1e-9)


def test_a_set_against_itself_is_read_once_and_scores_zero(engine, tiny_sets):
    stages = []
    engine.subscribe(lambda e: isinstance(e, Progress) and stages.append(e.info.get("stage")))
    final = engine.run(
        EvaluateRequest(set_a=str(tiny_sets[0]), set_b=str(tiny_sets[0]), runtime=ONE_THREAD)
    )
    assert isinstance(final, Result), getattr(final, "message", final)
    assert final.info["fid"] == pytest.approx(0.0, abs=1e-6)
    assert "Set A" in stages and "Set B" not in stages
