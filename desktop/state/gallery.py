"""The gallery as the GUI sees it: entries from engine.history, newest first, filtered by what
the user searched for (prompt words, model, date, starred).

Images are written to the store on the engine's worker thread (by the bridge), so the GUI only
queries the index here: one indexed SQLite query, a few ms for thousands of entries.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from PySide6.QtCore import QObject, Signal

from engine.history import HistoryEntry, HistoryStore

#: newest results shown; older ones stay on disk and in the index
SHOWN_LIMIT = 1000
DAY_S = 24 * 3600


@dataclass(frozen=True)
class GalleryFilter:
    text: str = ""  # every word must appear in the prompt
    model: str = ""  # "" for any model
    days: int = 0  # made in the last N days; 0 for any time
    starred: bool = False

    @property
    def active(self) -> bool:
        return self != GalleryFilter()


class GalleryState(QObject):
    changed = Signal()
    #: new entries of one finished job (a batch), newest job
    added = Signal(list)

    def __init__(self, store: HistoryStore | None = None, parent: QObject | None = None):
        super().__init__(parent)
        self.store = store or HistoryStore()
        self.recovered = _recover(self.store)
        self.filter = GalleryFilter()
        self.entries: list[HistoryEntry] = self._query()

    def _query(self) -> list[HistoryEntry]:
        f = self.filter
        since = time.time() - f.days * DAY_S if f.days else None
        return self.store.search(
            f.text, model=f.model, since=since, starred=f.starred, limit=SHOWN_LIMIT
        )

    def reload(self) -> None:
        self.entries = self._query()
        self.changed.emit()

    def set_filter(self, **changes) -> None:
        """Change some of the filter's fields (text, model, days, starred) and re-query."""
        new = replace(self.filter, **changes)
        if new != self.filter:
            self.filter = new
            self.reload()

    def models(self) -> list[str]:
        return self.store.models()

    def results_arrived(self, entries: list[HistoryEntry]) -> None:
        """New results go on top; no re-query and no full redraw (they arrive mid-session).
        While a filter is on, the query decides which of them show."""
        if self.filter.active:
            self.reload()
            return
        known = {e.id for e in self.entries}
        fresh = [e for e in entries if e.id not in known]
        self.entries = (fresh + self.entries)[:SHOWN_LIMIT]
        self.added.emit(fresh)

    def delete(self, entry_id: int) -> None:
        self.delete_many([entry_id])

    def delete_many(self, entry_ids: list[int]) -> None:
        for entry_id in entry_ids:
            self.store.delete(entry_id)
        self.reload()

    def set_starred(self, entry_ids: list[int], starred: bool) -> None:
        self.store.set_starred(entry_ids, starred)
        self.reload()

    def find(self, entry_id: int) -> HistoryEntry | None:
        return next((e for e in self.entries if e.id == entry_id), None)


def _recover(store: HistoryStore) -> int:
    """Pictures a crash left without a gallery row are adopted at start (nothing is lost)."""
    from engine.gallery_recovery import recover_gallery

    try:
        return recover_gallery(store).adopted
    except OSError:
        return 0  # an unreadable folder is reported where the gallery is shown, not here
