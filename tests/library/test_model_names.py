"""A model can be named the way the app lists it on every CLI command: a built-in's name in a
fresh data folder, a library record's name, its A1111 short hash or a longer hash prefix."""

from __future__ import annotations

import pytest

from engine.cli import main
from engine.errors import ModelError
from engine.library.records import ModelLibrary
from engine.library.resolve import model_path, resolve_model
from engine.library.scan import scan_library
from engine.metadata import read_image_settings
from engine.paths import database_path, resource

from .builders import sd1_shapes, write_stripped


def test_a_builtin_by_its_listed_name_in_a_fresh_data_folder():
    assert not database_path().exists()  # nothing scanned yet
    resolved = resolve_model("emoji-ldm")
    assert resolved.family == "ldm" and resolved.path == resource("models", "emoji-ldm")
    assert model_path("emoji-dcgan") == resource("models", "emoji-dcgan")
    with pytest.raises(ModelError, match="Model not found: 'emoji-nothing'"):
        resolve_model("emoji-nothing")
    with pytest.raises(ModelError, match="Model not found"):
        resolve_model("../emoji-ldm")  # names, not paths out of the built-in folder


def test_generate_with_a_builtin_name_and_the_largest_seed(tmp_path, capsys):
    out = tmp_path / "apple.png"
    args = ["generate", "a red apple", "--model", "emoji-ldm", "--steps", "2"]
    args += ["--seed", str(2**64 - 1), "-o", str(out), "--threads", "1", "--device", "cpu"]
    code = main(args)
    assert code == 0, capsys.readouterr().err
    found = read_image_settings(out)
    assert found.request.seed == 2**64 - 1 and found.request.model == "emoji-ldm"
    assert resolve_model(found.request.model).family == "ldm"  # reproducible by that name


def test_a_record_by_name_short_hash_and_hash_prefix(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "no-hf-cache"))
    folder = tmp_path / "mine"
    folder.mkdir()
    write_stripped(folder / "dreamy-v1.safetensors", sd1_shapes())
    library = ModelLibrary()
    library.add_folder(folder)
    scan_library(library, hash_files=True)
    record = next(r for r in library.list_models() if r.name == "dreamy-v1")
    for reference in ("dreamy-v1", record.short_hash, record.sha256[:16], record.sha256):
        assert str(model_path(reference)) == record.path, reference
    assert main(["models", "probe", record.short_hash]) == 0
    assert "checkpoint" in capsys.readouterr().out
    with pytest.raises(ModelError, match="Model not found"):
        model_path("0000000000")


def test_a_number_too_large_for_a_row_id_is_looked_up_as_a_name(tmp_path):
    # found by the metadata fuzz test: 2**63 as a model reference crashed SQLite's INTEGER
    folder = tmp_path / "mine"
    folder.mkdir()
    write_stripped(folder / "dreamy-v1.safetensors", sd1_shapes())
    library = ModelLibrary()
    library.add_folder(folder)
    scan_library(library)
    assert library.find(str(2**63)) is None
    assert library.find("id:" + "9" * 30) is None
