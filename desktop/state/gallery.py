"""The gallery as the GUI sees it: entries from engine.history, newest first.

Images are written to the store on the engine's worker thread (by the bridge), so the GUI only
reloads the index here, which is a quick SQLite query.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from engine.history import HistoryEntry, HistoryStore

#: newest results shown; older ones stay on disk and in the index
SHOWN_LIMIT = 1000


class GalleryState(QObject):
    changed = Signal()
    #: new entries of one finished job (a batch), newest job
    added = Signal(list)

    def __init__(self, store: HistoryStore | None = None, parent: QObject | None = None):
        super().__init__(parent)
        self.store = store or HistoryStore()
        self.recovered = _recover(self.store)
        self.entries: list[HistoryEntry] = self.store.entries(SHOWN_LIMIT)

    def reload(self) -> None:
        self.entries = self.store.entries(SHOWN_LIMIT)
        self.changed.emit()

    def results_arrived(self, entries: list[HistoryEntry]) -> None:
        """New results go on top; no re-query and no full redraw (they arrive mid-session)."""
        known = {e.id for e in self.entries}
        fresh = [e for e in entries if e.id not in known]
        self.entries = (fresh + self.entries)[:SHOWN_LIMIT]
        self.added.emit(fresh)

    def delete(self, entry_id: int) -> None:
        self.store.delete(entry_id)
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
