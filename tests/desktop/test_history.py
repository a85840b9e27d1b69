"""The gallery store: files and SQLite rows that survive a restart."""

from __future__ import annotations

import time

from PIL import Image

from engine.api import GenerationRequest
from engine.history import HistoryStore


def _image(colour):
    return Image.new("RGB", (40, 24), colour)


def test_batch_is_kept_newest_first_and_survives_restart(isolated_data_dir):
    store = HistoryStore()
    request = GenerationRequest(prompt="a red apple", seed=7, steps=5, width=40 // 8 * 8)
    first = store.add_batch([_image("red")], [dict(request.to_dict(), seed_used=7)])
    time.sleep(0.01)
    batch = store.add_batch([_image("blue"), _image("green")], [{"prompt": "b"}, {"prompt": "b"}])

    reopened = HistoryStore()  # a new process would do exactly this
    entries = reopened.entries()
    assert [e.id for e in entries] == [batch[0].id, batch[1].id, first[0].id]
    assert [e.batch_index for e in entries[:2]] == [0, 1]
    assert entries[0].batch_size == 2 and entries[2].batch_size == 1
    for entry in entries:
        assert entry.image_path.is_file() and entry.thumb_path.is_file()
        assert entry.image_path.parent == isolated_data_dir / "gallery"
    with Image.open(entries[2].image_path) as saved:
        assert saved.size == (40, 24) and saved.getpixel((0, 0)) == (255, 0, 0)
    restored = entries[2].generation_request()
    assert restored.prompt == "a red apple" and restored.seed == 7 and restored.steps == 5


def test_delete_removes_row_and_files():
    store = HistoryStore()
    entry = store.add(_image("red"), {"prompt": "x"})
    store.delete(entry.id)
    assert store.count() == 0
    assert not entry.image_path.exists() and not entry.thumb_path.exists()
    store.delete(entry.id)  # deleting twice is harmless


def test_no_temporary_files_left_behind():
    store = HistoryStore()
    store.add_batch([_image("red"), _image("blue")], [{}, {}])
    leftovers = [p.name for p in store.folder.rglob("*") if p.name.startswith(".")]
    assert leftovers == []


def test_png_carries_settings_readable_by_the_app():
    from desktop.images import read_generation_settings

    store = HistoryStore()
    request = GenerationRequest(prompt="a blue cat", negative_prompt="dog", seed=42, steps=9)
    entry = store.add(_image("blue"), request.to_dict())
    restored = read_generation_settings(entry.image_path)
    assert restored is not None
    assert (restored.prompt, restored.negative_prompt, restored.seed, restored.steps) == (
        "a blue cat",
        "dog",
        42,
        9,
    )


def test_unreadable_metadata_gives_no_request():
    store = HistoryStore()
    entry = store.add(_image("red"), {"steps": 100000})
    assert entry.generation_request() is None
