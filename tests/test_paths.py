"""Resource and data folders: checkout vs frozen bundle, unwritable data folder, atomic writes."""

from __future__ import annotations

import sys

from engine import paths


def test_resources_from_checkout():
    assert (paths.resources_dir() / "icons" / "easel.png").is_file()


def test_resources_from_frozen_bundle(tmp_path, monkeypatch):
    (tmp_path / "resources").mkdir()
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    assert paths.resources_dir() == tmp_path / "resources"
    assert paths.resource("models", "x") == tmp_path / "resources" / "models" / "x"


def test_data_dir_override(isolated_data_dir):
    assert paths.user_data_dir() == isolated_data_dir
    assert paths.data_dir_warning() is None
    assert paths.models_dir().is_dir() and paths.gallery_dir().is_dir()


def test_unwritable_data_dir_falls_back_with_warning(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("user data that must survive")
    monkeypatch.setenv("EASEL_DATA_DIR", str(blocker / "Easel"))
    data_dir = paths.user_data_dir()
    assert data_dir != blocker / "Easel" and data_dir.is_dir()
    warning = paths.data_dir_warning()
    assert warning and "cannot write" in warning and str(data_dir) in warning
    assert blocker.read_text() == "user data that must survive"


def test_atomic_write_replaces_whole_file(tmp_path):
    target = tmp_path / "deep" / "file.json"
    paths.atomic_write_text(target, "one")
    paths.atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in target.parent.iterdir()] == ["file.json"]
