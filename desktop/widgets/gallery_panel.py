"""The gallery panel: every kept result as a thumbnail, newest first, a batch side by side.

Actions on a result are emitted as signals with the entry; the main window carries them out
(open on canvas, use as init image, reuse settings, vary, upscale, save as, copy, delete).
"""

from __future__ import annotations

import datetime

from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QColor, QIcon, QPainter, QPixmap
from PySide6.QtWidgets import (
    QLabel,
    QListView,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QVBoxLayout,
    QWidget,
)

from desktop.state.gallery import GalleryState
from engine.history import HistoryEntry

THUMB = 120
#: (signal name, menu text); None is a separator
ACTIONS = (
    ("open_requested", "Open on canvas"),
    ("init_requested", "Use as init image"),
    ("reuse_requested", "Reuse settings"),
    ("vary_requested", "Vary"),
    ("upscale_requested", "Upscale"),
    None,
    ("describe_requested", "Describe image…"),
    ("interrogate_requested", "Interrogate…"),
    None,
    ("save_requested", "Save as…"),
    ("copy_requested", "Copy"),
    None,
    ("delete_requested", "Delete"),
)


class GalleryPanel(QWidget):
    open_requested = Signal(object)
    init_requested = Signal(object)
    reuse_requested = Signal(object)
    vary_requested = Signal(object)
    upscale_requested = Signal(object)
    save_requested = Signal(object)
    copy_requested = Signal(object)
    delete_requested = Signal(object)
    describe_requested = Signal(object)
    interrogate_requested = Signal(object)

    def __init__(self, gallery: GalleryState, parent=None, *, can_upscale: bool = False):
        super().__init__(parent)
        self.gallery = gallery
        self.can_upscale = can_upscale
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        self.title = QLabel()
        self.title.setObjectName("section")
        layout.addWidget(self.title)
        self.list = QListWidget()
        self.list.setViewMode(QListView.ViewMode.IconMode)
        self.list.setIconSize(QSize(THUMB, THUMB))
        self.list.setGridSize(QSize(THUMB + 10, THUMB + 10))
        self.list.setResizeMode(QListView.ResizeMode.Adjust)
        self.list.setMovement(QListView.Movement.Static)
        self.list.setUniformItemSizes(True)
        self.list.setSpacing(2)
        self.list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.list.customContextMenuRequested.connect(self._menu)
        self.list.itemDoubleClicked.connect(lambda item: self._emit("open_requested", item))
        layout.addWidget(self.list, 1)
        self.empty = QLabel("Results appear here.\nEvery image you make is kept.")
        self.empty.setObjectName("note")
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        layout.addWidget(self.empty, 1)
        self._icons: dict[tuple[int, str], QIcon] = {}  # (entry id, band colour) -> icon
        self._placeholder = _placeholder()
        # thumbnails load a few at a time after the list shows, so a large gallery never holds
        # up the window (each is a JPEG decode)
        self._pending: list[tuple[QListWidgetItem, HistoryEntry, QColor | None]] = []
        self._loader = QTimer(self)
        self._loader.setInterval(0)
        self._loader.timeout.connect(self._load_some)
        gallery.changed.connect(self.refresh)
        gallery.added.connect(self._insert_new)
        self.refresh()

    def refresh(self) -> None:
        self.list.clear()
        self._pending.clear()
        entries = self.gallery.entries
        batch_colours = _batch_colours(entries)
        for entry in entries:
            band = batch_colours.get(entry.batch_id)
            cached = self._icons.get((entry.id, band.name() if band else ""))
            item = QListWidgetItem(cached or self._placeholder, "")
            item.setData(Qt.ItemDataRole.UserRole, entry.id)
            item.setToolTip(_tooltip(entry))
            item.setSizeHint(QSize(THUMB + 10, THUMB + 10))
            self.list.addItem(item)
            if cached is None:
                self._pending.append((item, entry, band))
        self._show_count()
        if self._pending:
            self._loader.start()

    def _insert_new(self, entries: list[HistoryEntry]) -> None:
        """Put a finished batch at the top without rebuilding the whole list."""
        colours = _batch_colours(self.gallery.entries)
        for row, entry in enumerate(entries):
            band = colours.get(entry.batch_id)
            self.list.insertItem(row, self._item(entry, band))
        while self.list.count() > len(self.gallery.entries):
            self.list.takeItem(self.list.count() - 1)
        self._show_count()

    def _item(self, entry: HistoryEntry, band: QColor | None) -> QListWidgetItem:
        item = QListWidgetItem(self._icon(entry, band), "")
        item.setData(Qt.ItemDataRole.UserRole, entry.id)
        item.setToolTip(_tooltip(entry))
        item.setSizeHint(QSize(THUMB + 10, THUMB + 10))
        return item

    def _show_count(self) -> None:
        count = len(self.gallery.entries)
        self.title.setText(f"GALLERY · {count}")
        self.empty.setVisible(not count)
        self.list.setVisible(bool(count))

    def _load_some(self, count: int = 12) -> None:
        for item, entry, band in self._pending[:count]:
            item.setIcon(self._icon(entry, band))
        del self._pending[:count]
        if not self._pending:
            self._loader.stop()

    @property
    def loading(self) -> bool:
        return bool(self._pending)

    def _icon(self, entry: HistoryEntry, band: QColor | None) -> QIcon:
        """The thumbnail; images of one batch share a coloured band so a batch reads as a group."""
        key = (entry.id, band.name() if band else "")
        if key in self._icons:
            return self._icons[key]
        pixmap = QPixmap(str(entry.thumb_path))
        if pixmap.isNull():
            pixmap = QPixmap(THUMB, THUMB)
            pixmap.fill(QColor(70, 70, 76))
        canvas = QPixmap(THUMB, THUMB)
        canvas.fill(Qt.GlobalColor.transparent)
        painter = QPainter(canvas)
        scaled = pixmap.scaled(
            THUMB,
            THUMB,
            Qt.AspectRatioMode.KeepAspectRatio,
            Qt.TransformationMode.SmoothTransformation,
        )
        painter.drawPixmap((THUMB - scaled.width()) // 2, (THUMB - scaled.height()) // 2, scaled)
        if band is not None:
            painter.fillRect(0, THUMB - 5, THUMB, 5, band)
        painter.end()
        icon = QIcon(canvas)
        self._icons[key] = icon
        return icon

    def selected_entry(self) -> HistoryEntry | None:
        item = self.list.currentItem()
        return self.gallery.find(item.data(Qt.ItemDataRole.UserRole)) if item else None

    def select_entry(self, entry_id: int) -> None:
        for row in range(self.list.count()):
            if self.list.item(row).data(Qt.ItemDataRole.UserRole) == entry_id:
                self.list.setCurrentRow(row)
                return

    def menu_for(self, entry: HistoryEntry) -> QMenu:
        menu = QMenu(self)
        for spec in ACTIONS:
            if spec is None:
                menu.addSeparator()
                continue
            name, text = spec
            if name == "upscale_requested" and not self.can_upscale:
                continue  # the engine has no upscale job yet
            action = QAction(text, menu)
            action.triggered.connect(lambda _=False, n=name: getattr(self, n).emit(entry))
            menu.addAction(action)
        return menu

    def _menu(self, position) -> None:
        item = self.list.itemAt(position)
        if item is None:
            return
        entry = self.gallery.find(item.data(Qt.ItemDataRole.UserRole))
        if entry is not None:
            self.menu_for(entry).exec(self.list.viewport().mapToGlobal(position))

    def _emit(self, name: str, item: QListWidgetItem) -> None:
        entry = self.gallery.find(item.data(Qt.ItemDataRole.UserRole))
        if entry is not None:
            getattr(self, name).emit(entry)


def _placeholder() -> QIcon:
    pixmap = QPixmap(THUMB, THUMB)
    pixmap.fill(QColor(44, 46, 51))
    return QIcon(pixmap)


def _batch_colours(entries: list[HistoryEntry]) -> dict[str, QColor]:
    """Alternating colours for batches, counted from the oldest so a batch keeps its colour when
    newer results arrive (and neighbouring batches always differ)."""
    palette = [QColor(90, 160, 255), QColor(255, 170, 60), QColor(120, 210, 130)]
    colours: dict[str, QColor] = {}
    for entry in reversed(entries):
        if entry.batch_size > 1 and entry.batch_id not in colours:
            colours[entry.batch_id] = palette[len(colours) % len(palette)]
    return colours


def _tooltip(entry: HistoryEntry) -> str:
    when = datetime.datetime.fromtimestamp(entry.created_at).strftime("%Y-%m-%d %H:%M")
    meta = entry.metadata
    if meta.get("type") == "upscale":
        method = meta.get("method", "")
        return f"Upscaled ×{meta.get('scale', '')} {method}\n{entry.width}×{entry.height} · {when}"
    lines = [entry.prompt or "(no prompt)", f"{entry.width}×{entry.height} · {when}"]
    if meta.get("model"):
        lines.append(f"model: {meta['model']}")
    seed = meta.get("seed_used", meta.get("seed"))
    if seed is not None:
        lines.append(f"seed: {seed} · {meta.get('sampler', '')} · {meta.get('steps', '')} steps")
    if entry.batch_size > 1:
        lines.append(f"batch image {entry.batch_index + 1} of {entry.batch_size}")
    return "\n".join(lines)
