"""Hashes, records and scans: sources, rescans, moved/deleted files, broken files."""

from __future__ import annotations

import hashlib
import json
import os
import shutil

from engine.library.hashing import HashCache, sha256_file, short_hash
from engine.library.records import ModelLibrary, find_record_path
from engine.library.scan import scan_library
from engine.paths import database_path, models_dir, resource

from .builders import sd1_shapes, sdxl_shapes, write_stripped


def _user(paths):
    """Paths in the user's models folder (built-in models in resources/ are scanned too)."""
    return [p for p in paths if p.startswith(str(models_dir().resolve()))]


def test_sha256_streamed_and_cached_by_size_and_mtime(tmp_path):
    path = tmp_path / "m.bin"
    data = os.urandom(3 * 1024 * 1024 + 7)
    path.write_bytes(data)
    expected = hashlib.sha256(data).hexdigest()
    assert sha256_file(path) == expected
    assert short_hash(expected) == expected[:10]
    cache = HashCache(tmp_path / "db.sqlite3")
    assert cache.cached(path) is None
    assert cache.sha256(path) == expected
    assert cache.cached(path) == expected
    path.write_bytes(data[:-1])  # size changes: the cached hash no longer applies
    assert cache.cached(path) is None
    assert cache.sha256(path) == hashlib.sha256(data[:-1]).hexdigest()


def test_scan_finds_identifies_and_records_models(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "no-hf-cache"))
    root = models_dir()
    write_stripped(root / "one.safetensors", sd1_shapes())
    (root / "sub").mkdir()
    write_stripped(root / "sub" / "two.safetensors", sdxl_shapes(9))
    (root / "zero.safetensors").write_bytes(b"")
    (root / "notes.txt").write_text("not a model")
    shutil.copytree(resource("configs", "sd2-768-v"), root / "diffusers-model")

    report = scan_library(hash_files=True)
    assert len(_user(report.added)) == 4 and len(report.broken) == 1
    assert database_path().exists()
    library = ModelLibrary()
    rows = {r.name: r for r in library.list_models()}
    assert (rows["one"].kind, rows["one"].base, rows["one"].config) == ("checkpoint", "sd1", "sd1")
    assert (rows["two"].base, rows["two"].variant) == ("sdxl", "inpaint")
    assert rows["one"].sha256 == sha256_file(root / "one.safetensors")
    assert len(rows["one"].short_hash) == 10
    assert (rows["diffusers-model"].layout, rows["diffusers-model"].variant) == (
        "diffusers",
        "v_prediction",
    )
    assert rows["zero"].status == "broken" and "empty" in rows["zero"].reason

    # Resolve by name and by id, as resolve_model does.
    assert find_record_path("one") == str((root / "one.safetensors").resolve())
    assert find_record_path(f"id:{rows['two'].id}") == str((root / "sub/two.safetensors").resolve())
    assert find_record_path("no-such-model") is None

    # Warm rescan reads nothing again.
    again = scan_library()
    assert again.unchanged == len(report.added) and not again.added and not again.updated


def test_rescan_notices_moved_and_deleted_files(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "no-hf-cache"))
    root = models_dir()
    write_stripped(root / "a.safetensors", sd1_shapes())
    write_stripped(root / "b.safetensors", sdxl_shapes())
    scan_library()
    library = ModelLibrary()
    record_a = library.find("a")
    library.set_notes(record_a.id, "my favourite")

    (root / "moved").mkdir()
    os.rename(root / "a.safetensors", root / "moved" / "renamed.safetensors")
    os.remove(root / "b.safetensors")
    report = scan_library()
    assert len(report.moved) == 1 and len(report.missing) == 1 and not report.added
    moved = library.get(record_a.id)
    assert moved.path == str((root / "moved" / "renamed.safetensors").resolve())
    assert moved.notes == "my favourite" and moved.status == "ok"
    assert library.find("b").status == "missing"
    assert find_record_path("b") is None

    write_stripped(root / "b.safetensors", sdxl_shapes())  # it comes back
    scan_library()
    assert library.find("b").status == "ok"


def test_user_folders_hf_cache_and_builtin_sources(tmp_path, monkeypatch):
    hf = tmp_path / "hf"
    repo = hf / "models--someone--tiny-sdxl"
    snapshot = repo / "snapshots" / "abc123"
    shutil.copytree(resource("configs", "sdxl-base"), snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HUB_CACHE", str(hf))
    extra = tmp_path / "my-models"
    extra.mkdir()
    write_stripped(extra / "x.safetensors", sd1_shapes())
    builtin = tmp_path / "builtin"
    (builtin / "native-one").mkdir(parents=True)
    (builtin / "native-one" / "config.json").write_text(json.dumps({"family": "vae"}))
    monkeypatch.setattr("engine.paths.resource", lambda *p: builtin if p == ("models",) else None)

    library = ModelLibrary()
    library.add_folder(extra)
    scan_library(library)
    rows = {r.name: r for r in library.list_models()}
    assert rows["someone/tiny-sdxl"].source == "hf-cache"
    assert rows["someone/tiny-sdxl"].base == "sdxl"
    assert rows["x"].source == f"folder:{extra.resolve()}"
    assert (rows["native-one"].kind, rows["native-one"].source) == ("native", "builtin")
    library.remove_folder(extra)
    assert library.find("x") is None and (extra / "x.safetensors").exists()


def test_scan_job_through_the_engine(engine, tmp_path, monkeypatch):
    from engine.api import ScanLibraryRequest
    from engine.events import Progress, Result

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "no-hf-cache"))
    write_stripped(models_dir() / "a.safetensors", sd1_shapes())
    write_stripped(models_dir() / "b.safetensors", sdxl_shapes())
    events = []
    engine.subscribe(events.append)
    final = engine.run(ScanLibraryRequest(hash_files=True), timeout=60)
    assert isinstance(final, Result), final
    added = final.info["added"]
    assert len(_user(added)) == 2 and final.info["summary"].startswith(f"{len(added)} new")
    assert [e.step for e in events if isinstance(e, Progress)] == list(range(len(added)))
    assert all(len(r.sha256) == 64 for r in ModelLibrary().list_models() if r.status == "ok")
