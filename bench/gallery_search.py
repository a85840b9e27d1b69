"""Gallery search and filters: time from a query to the panel redrawn, over N entries.

    python bench/gallery_search.py --entries 300 3000

Fills a throw-away data folder with N gallery entries (tiny pictures, prompts mixing colours
and subjects, two models), then times each query through GalleryState + GalleryPanel, the code
the user drives: the SQLite query (indexed prompt/model/starred columns) and redrawing the list
with cached thumbnails. Medians of 7 runs per query. Also times the migration of an old
database (search columns added and filled in place).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

#: each query starts from an unmatched search, so every one re-queries and redraws
QUERIES = (
    ("text: 'golden'", {"text": "golden"}),
    ("text: 'red apple'", {"text": "red apple"}),
    ("model", {"text": "", "model": "builtin:emoji-ldm"}),
    ("last 7 days", {"text": "", "days": 7}),
    ("starred", {"text": "", "starred": True}),
    ("everything", {"text": ""}),
)


def fill(store, count: int) -> None:
    from PIL import Image

    colours = ("red", "blue", "green", "golden", "purple")
    subjects = ("apple", "cat face", "rocket", "house", "tree")
    picture = Image.new("RGB", (16, 16), "white")
    for i in range(count):
        prompt = f"a {colours[i % 5]} {subjects[(i // 5) % 5]} #{i}"
        model = "builtin:emoji-ldm" if i % 3 else "/models/dreamshaper.safetensors"
        entry = store.add(picture, {"prompt": prompt, "model": model, "seed": i})
        if i % 17 == 0:
            store.set_starred([entry.id], True)


def run(count: int) -> list[tuple[str, float]]:
    from PySide6.QtWidgets import QApplication

    from desktop.state.gallery import GalleryState
    from desktop.widgets.gallery_panel import GalleryPanel
    from engine.history import HistoryStore

    app = QApplication.instance() or QApplication([])
    with tempfile.TemporaryDirectory() as folder:
        os.environ["EASEL_DATA_DIR"] = folder
        store = HistoryStore(Path(folder) / "easel.db", Path(folder) / "gallery")
        fill(store, count)
        gallery = GalleryState(store)
        panel = GalleryPanel(gallery)
        panel.show()
        while panel.loading:
            app.processEvents()
        rows = []
        for name, changes in QUERIES:
            times = []
            for _ in range(7):
                gallery.set_filter(text="\x01", model="", days=0, starred=False)
                start = time.perf_counter()
                gallery.set_filter(**changes)
                times.append(time.perf_counter() - start)
            rows.append((name, statistics.median(times)))
        rows.append(("migrate old database", migrate(store)))
        panel.close()
    return rows


def migrate(store) -> float:
    from engine.history import HistoryStore

    with sqlite3.connect(store.db_path) as conn:
        conn.executescript(
            "CREATE TABLE old AS SELECT id, batch_id, batch_index, batch_size, created_at,"
            " image_path, thumb_path, width, height, metadata FROM history;"
            "DROP TABLE history; ALTER TABLE old RENAME TO history;"
        )
    start = time.perf_counter()
    HistoryStore(store.db_path, store.folder)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, nargs="+", default=[300, 3000])
    args = parser.parse_args()
    for count in args.entries:
        print(f"\n{count} entries")
        for name, seconds in run(count):
            print(f"  {name:<22} {seconds * 1000:7.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
