"""Gallery search and filters (prompt words, model, date, star), several selected at once,
and the database migration that keeps an older gallery."""

from __future__ import annotations

import sqlite3
import time

from PIL import Image

from desktop.gallery_actions import export_entries
from desktop.state.gallery import DAY_S, GalleryState
from desktop.widgets.gallery_panel import GalleryPanel
from engine.history import HistoryStore

COLOURS = ("red", "blue", "green", "golden", "purple")
SUBJECTS = ("apple", "cat face", "rocket", "house", "tree")


def _fill(store: HistoryStore, count: int) -> None:
    """`count` entries: prompts mix colours and subjects, two models, some made 10 days ago."""
    picture = Image.new("RGB", (16, 16), "white")
    for i in range(count):
        prompt = f"a {COLOURS[i % 5]} {SUBJECTS[(i // 5) % 5]} #{i}"
        model = "builtin:emoji-ldm" if i % 3 else "/models/dreamshaper.safetensors"
        store.add(picture, {"prompt": prompt, "model": model, "seed": i})
    with sqlite3.connect(store.db_path) as conn:  # the first 50 are older
        conn.execute("UPDATE history SET created_at = created_at - ? WHERE id <= 50", (10 * DAY_S,))


def test_search_and_filters_over_hundreds_of_entries_are_fast(qtbot):
    store = HistoryStore()
    _fill(store, 300)
    gallery = GalleryState(store)
    panel = GalleryPanel(gallery)
    qtbot.addWidget(panel)
    panel.show()
    assert len(gallery.entries) == 300

    timings = []
    for text in ("golden", "red apple", "cat", ""):
        start = time.perf_counter()
        panel.search.setText(text)
        panel.apply_search()
        timings.append(time.perf_counter() - start)
    panel.search.setText("golden rocket")
    panel.apply_search()
    assert gallery.entries and all(
        "golden" in e.prompt and "rocket" in e.prompt for e in gallery.entries
    )
    assert len(gallery.entries) == 12  # 300 / 25 combinations

    start = time.perf_counter()
    panel.model_filter.setCurrentIndex(panel.model_filter.findData("builtin:emoji-ldm"))
    panel.model_filter.activated.emit(panel.model_filter.currentIndex())
    panel.date_filter.setCurrentIndex(2)  # last 7 days
    timings.append(time.perf_counter() - start)
    assert gallery.entries
    assert all(e.metadata["model"] == "builtin:emoji-ldm" for e in gallery.entries)
    assert all(int(e.prompt.rsplit("#", 1)[1]) >= 50 for e in gallery.entries)
    assert panel.title.text() == f"GALLERY · {len(gallery.entries)}"
    # one query plus redrawing the list: well under 100 ms each on this 2-core machine
    assert max(timings) < 0.1, timings


def test_starring_and_the_starred_filter(qtbot):
    store = HistoryStore()
    _fill(store, 8)
    gallery = GalleryState(store)
    panel = GalleryPanel(gallery)
    qtbot.addWidget(panel)
    entry = gallery.entries[2]
    panel.star_requested.emit(entry)
    assert gallery.find(entry.id).starred and HistoryStore().get(entry.id).starred
    panel.starred_only.setChecked(True)
    assert [e.id for e in gallery.entries] == [entry.id]
    menu = panel.menu_for(gallery.entries[0])
    assert "Remove star" in [a.text() for a in menu.actions()]
    panel.starred_only.setChecked(False)
    assert len(gallery.entries) == 8


def test_several_selected_are_starred_exported_or_deleted(qtbot, tmp_path):
    store = HistoryStore()
    _fill(store, 6)
    gallery = GalleryState(store)
    panel = GalleryPanel(gallery)
    qtbot.addWidget(panel)
    panel.show()
    for row in (0, 2, 3):
        panel.list.item(row).setSelected(True)
    assert panel.selection_bar.isVisible() and panel.selection_label.text() == "3 selected"
    chosen = panel.selected_entries()
    panel.star_selected.click()
    assert all(gallery.find(e.id).starred for e in chosen)
    with qtbot.waitSignal(panel.export_requested) as exported:
        panel.export_selected.click()
    copied, problems = export_entries(exported.args[0], tmp_path)
    assert (copied, problems) == (3, [])
    assert export_entries(exported.args[0], tmp_path)[0] == 3  # no overwrite: new names
    assert len(list(tmp_path.glob("*.png"))) == 6
    with qtbot.waitSignal(panel.delete_many_requested) as deleting:
        panel.delete_selected.click()
    gallery.delete_many([e.id for e in deleting.args[0]])
    assert len(gallery.entries) == 3 and store.count() == 3
    assert not any(e.image_path.exists() for e in chosen)


def test_an_older_gallery_database_is_migrated_and_kept(isolated_data_dir):
    store = HistoryStore()
    _fill(store, 3)
    with sqlite3.connect(store.db_path) as conn:  # the table as the first release made it
        conn.executescript(
            "CREATE TABLE old AS SELECT id, batch_id, batch_index, batch_size, created_at,"
            " image_path, thumb_path, width, height, metadata FROM history;"
            "DROP TABLE history; ALTER TABLE old RENAME TO history;"
        )
    reopened = HistoryStore()
    assert reopened.count() == 3
    assert [e.id for e in reopened.search("golden")] == [] and len(reopened.search("blue")) == 1
    assert reopened.models() == ["/models/dreamshaper.safetensors", "builtin:emoji-ldm"]
    assert all(e.image_path.is_file() for e in reopened.entries())


def test_search_treats_percent_and_underscore_as_text():
    store = HistoryStore()
    picture = Image.new("RGB", (8, 8))
    store.add(picture, {"prompt": "100% cotton"})
    store.add(picture, {"prompt": "100 cotton"})
    store.add(picture, {"prompt": "snake_case"})
    assert [e.prompt for e in store.search("100%")] == ["100% cotton"]
    assert [e.prompt for e in store.search("e_c")] == ["snake_case"]
