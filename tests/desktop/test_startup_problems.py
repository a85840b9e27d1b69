"""Start-up survives a damaged settings file and an unwritable data folder, and says so."""

from __future__ import annotations

import subprocess
import sys

from desktop.state.preferences import Preferences, set_aside_if_damaged


def test_damaged_settings_are_kept_aside_and_defaults_used(qtbot, isolated_data_dir):
    damaged = b"\x00\xff[General\n=broken"
    (isolated_data_dir / "desktop.ini").write_bytes(damaged)
    prefs = Preferences()
    assert prefs.problem and "damaged" in prefs.problem
    kept = [p for p in isolated_data_dir.iterdir() if p.name.startswith("desktop.ini.damaged-")]
    assert len(kept) == 1 and kept[0].read_bytes() == damaged
    assert prefs.model_folders() == []
    prefs.set_default_model("builtin:emoji-ldm")
    assert Preferences().default_model() == "builtin:emoji-ldm"


def test_good_settings_file_is_left_alone(tmp_path):
    path = tmp_path / "desktop.ini"
    path.write_text("[library]\nfolders=[]\n; comment\n")
    assert set_aside_if_damaged(path) is None
    assert path.read_text().startswith("[library]")


def test_app_starts_with_damaged_settings_and_unwritable_data_dir(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("keep me")
    env = {"EASEL_DATA_DIR": str(blocker / "Easel"), "QT_QPA_PLATFORM": "offscreen"}
    import os

    result = subprocess.run(
        [sys.executable, "-m", "desktop.cli", "--startup-report"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert '"window_shown_s"' in result.stdout
    assert "cannot write to its data folder" in result.stderr
    assert blocker.read_text() == "keep me"
