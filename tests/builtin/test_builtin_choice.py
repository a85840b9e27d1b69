"""The first-launch default follows the built-ins' measured quality (quality.json), not a name."""

from __future__ import annotations

import json

from engine.library.builtin_choice import best_builtin, measured_builtins, rank_key


def write_quality(root, name, *, fid, faithfulness=None, grid=None):
    folder = root / name
    folder.mkdir(parents=True)
    quality = {"family": "x", "model": {"fid": fid, "kid": 0.1}}
    if faithfulness is not None:
        quality["faithfulness"] = {"rate": faithfulness, "chance_rate": 0.02, "rows": []}
    if grid is not None:
        quality["grid_count"] = grid
    (folder / "quality.json").write_text(json.dumps(quality))


def test_the_most_faithful_text_model_wins_then_grid_count_then_fid(tmp_path):
    write_quality(tmp_path, "gan", fid=90.0)  # best FID, but it ignores prompts
    write_quality(tmp_path, "ldm", fid=186.9, faithfulness=0.25, grid=8)
    write_quality(tmp_path, "dalle", fid=210.0, faithfulness=0.40, grid=7)
    assert best_builtin(tmp_path) == "dalle"

    write_quality(tmp_path, "tie-grid", fid=250.0, faithfulness=0.40, grid=9)
    assert best_builtin(tmp_path) == "tie-grid"
    write_quality(tmp_path, "tie-fid", fid=150.0, faithfulness=0.40, grid=9)
    assert best_builtin(tmp_path) == "tie-fid"


def test_unmeasured_or_unreadable_folders_are_left_out(tmp_path):
    write_quality(tmp_path, "ldm", fid=186.9, faithfulness=0.25)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "quality.json").write_text("{not json")
    (tmp_path / "unmeasured").mkdir()
    assert list(measured_builtins(tmp_path)) == ["ldm"]
    assert best_builtin(tmp_path) == "ldm"
    assert rank_key({})[0] < rank_key({"faithfulness": {"rate": 0.0}})[0]


def test_no_prompt_following_model_means_no_measured_choice(tmp_path):
    write_quality(tmp_path, "gan", fid=90.0)
    assert best_builtin(tmp_path) is None
    assert best_builtin(tmp_path / "missing") is None
