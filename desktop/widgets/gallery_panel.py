"""The gallery panel: every kept result as a thumbnail, newest first, a batch side by side.

Actions on a result are emitted as signals with the entry; the main window carries them out
(open on canvas, use as init image, reuse settings, vary, upscale, save as, copy, delete).
A filter bar searches prompts and narrows by model, date and star; several results can be
selected (Ctrl/Shift+click) to star, export or delete them together.
"""

from __future__ import annotations

import datetime

from PySide6.QtCore import QRect, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QColor, QFont, QIcon, QPainter, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from desktop.state.gallery import GalleryState
from engine.history import HistoryEntry
from engine.variations import variation_label

THUMB = 120
#: (label, days) for the date filter; 0 = any time
DATE_CHOICES = (("Any time", 0), ("Today", 1), ("Last 7 days", 7), ("Last 30 days", 30))
SEARCH_DELAY_MS = 150  # typing re-queries once the user pauses
#: (signal name, menu text); None is a separator
ACTIONS = (
    ("open_requested", "Open on canvas"),
    ("init_requested", "Use as init image"),
    ("reuse_requested", "Reuse settings"),
    None,
    ("vary_requested", "Vary (subtle)"),
    ("vary_strong_requested", "Vary (strong)"),
    ("upscale_x2_requested", "Upscale ×2"),
    ("upscale_x4_requested", "Upscale ×4"),
    ("upscale_requested", "Upscale…"),
    ("hires_requested", "Hires fix"),
    None,
    ("describe_requested", "Describe image…"),
    ("interrogate_requested", "Interrogate…"),
    None,
    ("save_requested", "Save as…"),
    ("copy_requested", "Copy"),
    ("star_requested", "Star"),
    None,
    ("delete_requested", "Delete"),
)


class GalleryPanel(QWidget):
    open_requested = Signal(object)
    init_requested = Signal(object)
    reuse_requested = Signal(object)
    vary_requested = Signal(object)  # subtle
    vary_strong_requested = Signal(object)
    upscale_requested = Signal(object)  # asks for the upscaler and factor
    upscale_x2_requested = Signal(object)
    upscale_x4_requested = Signal(object)
    hires_requested = Signal(object)
    save_requested = Signal(object)
    copy_requested = Signal(object)
    delete_requested = Signal(object)
    describe_requested = Signal(object)
    interrogate_requested = Signal(object)
    star_requested = Signal(object)
    #: several selected entries (list[HistoryEntry]) to delete or export together
    delete_many_requested = Signal(list)
    export_requested = Signal(list)

    def __init__(self, gallery: GalleryState, parent=None, *, can_upscale: bool = False):
        super().__init__(parent)
        self.gallery = gallery
        self.can_upscale = can_upscale
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        self.title = QLabel()
        self.title.setObjectName("section")
        layout.addWidget(self.title)
        layout.addLayout(self._filter_bar())
        from desktop.gallery_actions import build_gallery_toolbar

        self.toolbar = build_gallery_toolbar(self)
        layout.addWidget(self.toolbar)
        self.list = QListWidget()
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
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
        layout.addWidget(self._selection_bar())
        self.list.itemSelectionChanged.connect(self._selection_changed)
        self.star_requested.connect(lambda e: self.gallery.set_starred([e.id], not e.starred))
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

    # -- filter bar and selection bar -----------------------------------------------------------
    def _filter_bar(self) -> QVBoxLayout:
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search prompts")
        self.search.setClearButtonEnabled(True)
        self._search_timer = QTimer(self)
        self._search_timer.setSingleShot(True)
        self._search_timer.setInterval(SEARCH_DELAY_MS)
        self._search_timer.timeout.connect(self.apply_search)
        self.search.textChanged.connect(lambda _t: self._search_timer.start())
        self.search.returnPressed.connect(self.apply_search)
        self.model_filter = QComboBox()
        self.model_filter.setToolTip("Only results of this model")
        self.model_filter.setMinimumContentsLength(7)
        self.model_filter.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self._fill_models()
        self.model_filter.activated.connect(
            lambda: self.gallery.set_filter(model=self.model_filter.currentData() or "")
        )
        self.date_filter = QComboBox()
        self.date_filter.setToolTip("Only results made in this time")
        self.date_filter.setMinimumContentsLength(8)
        self.date_filter.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        for label, days in DATE_CHOICES:
            self.date_filter.addItem(label, days)
        self.date_filter.currentIndexChanged.connect(
            lambda: self.gallery.set_filter(days=int(self.date_filter.currentData()))
        )
        self.starred_only = QToolButton()
        self.starred_only.setText("★")
        self.starred_only.setCheckable(True)
        self.starred_only.setToolTip("Starred results only")
        self.starred_only.toggled.connect(lambda on: self.gallery.set_filter(starred=on))
        column = QVBoxLayout()
        column.setSpacing(4)
        column.addWidget(self.search)
        row = QHBoxLayout()
        row.addWidget(self.model_filter, 1)
        row.addWidget(self.date_filter)
        row.addWidget(self.starred_only)
        column.addLayout(row)
        return column

    def apply_search(self) -> None:
        self._search_timer.stop()
        self.gallery.set_filter(text=self.search.text().strip())

    def _fill_models(self) -> None:
        current = self.model_filter.currentData() or ""
        self.model_filter.clear()
        self.model_filter.addItem("All models", "")
        for model in self.gallery.models():
            self.model_filter.addItem(_model_label(model), model)
            self.model_filter.setItemData(self.model_filter.count() - 1, model, Qt.ToolTipRole)
        self.model_filter.setCurrentIndex(max(0, self.model_filter.findData(current)))

    def _selection_bar(self) -> QWidget:
        bar = QWidget()
        row = QHBoxLayout(bar)
        row.setContentsMargins(0, 0, 0, 0)
        self.selection_label = QLabel()
        self.star_selected = QPushButton("★ Star")
        self.star_selected.clicked.connect(self._star_selection)
        self.export_selected = QPushButton("Export…")
        self.export_selected.clicked.connect(
            lambda: self.export_requested.emit(self.selected_entries())
        )
        self.delete_selected = QPushButton("Delete")
        self.delete_selected.clicked.connect(
            lambda: self.delete_many_requested.emit(self.selected_entries())
        )
        row.addWidget(self.selection_label, 1)
        for button in (self.star_selected, self.export_selected, self.delete_selected):
            row.addWidget(button)
        bar.hide()
        self.selection_bar = bar
        return bar

    def selected_entries(self) -> list[HistoryEntry]:
        ids = [item.data(Qt.ItemDataRole.UserRole) for item in self.list.selectedItems()]
        return [e for e in (self.gallery.find(i) for i in ids) if e is not None]

    def _selection_changed(self) -> None:
        count = len(self.list.selectedItems())
        self.toolbar.setEnabled(self.selected_entry() is not None)
        self.selection_bar.setVisible(count > 1)
        self.selection_label.setText(f"{count} selected")

    def _star_selection(self) -> None:
        entries = self.selected_entries()
        # star them all unless all are starred already (then the button un-stars)
        self.gallery.set_starred([e.id for e in entries], not all(e.starred for e in entries))

    def refresh(self) -> None:
        selected = {item.data(Qt.ItemDataRole.UserRole) for item in self.list.selectedItems()}
        self.list.clear()
        self._pending.clear()
        entries = self.gallery.entries
        batch_colours = _batch_colours(entries)
        for entry in entries:
            band = batch_colours.get(entry.batch_id)
            cached = self._icons.get(_icon_key(entry, band))
            item = QListWidgetItem(cached or self._placeholder, "")
            item.setData(Qt.ItemDataRole.UserRole, entry.id)
            item.setToolTip(_tooltip(entry))
            item.setSizeHint(QSize(THUMB + 10, THUMB + 10))
            self.list.addItem(item)
            if cached is None:
                self._pending.append((item, entry, band))
            if entry.id in selected:
                item.setSelected(True)
        self._fill_models()
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
        self._fill_models()
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
        filtered = self.gallery.filter.active
        self.empty.setText(
            "Nothing matches the search and filters."
            if filtered
            else "Results appear here.\nEvery image you make is kept."
        )
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
        key = _icon_key(entry, band)
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
        if entry.starred:
            _draw_star(painter)
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
            if name.startswith("upscale") and not self.can_upscale:
                continue  # the engine has no upscale job yet
            if name == "star_requested" and entry.starred:
                text = "Remove star"
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


def _icon_key(entry: HistoryEntry, band: QColor | None) -> tuple:
    return (entry.id, band.name() if band else "", entry.starred)


def _draw_star(painter: QPainter) -> None:
    """A gold star in the top right corner, on a dark disc so it reads on any picture."""
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(QColor(20, 20, 24, 190))
    painter.drawEllipse(THUMB - 28, 4, 24, 24)
    font = QFont(painter.font())
    font.setPixelSize(17)
    painter.setFont(font)
    painter.setPen(QColor(255, 200, 60))
    painter.drawText(QRect(THUMB - 28, 4, 24, 24), Qt.AlignmentFlag.AlignCenter, "★")


def _model_label(model: str) -> str:
    """A short name for a model reference: 'builtin:emoji-ldm', a file or a folder's name."""
    if model.startswith("builtin:"):
        return model.split(":", 1)[1]
    return model.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1] or model


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
    origin = variation_label(meta.get("extras") or {})
    if origin:
        lines.insert(1, origin)
    if meta.get("model"):
        lines.append(f"model: {meta['model']}")
    seed = meta.get("seed_used", meta.get("seed"))
    if seed is not None:
        lines.append(f"seed: {seed} · {meta.get('sampler', '')} · {meta.get('steps', '')} steps")
    if entry.batch_size > 1:
        lines.append(f"batch image {entry.batch_index + 1} of {entry.batch_size}")
    return "\n".join(lines)
