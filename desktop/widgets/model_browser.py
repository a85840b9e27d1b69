"""The model browser: every model the library knows, with what it is and why it may not work.

Search and filter by kind and base; import with a file dialog or by dropping `.safetensors` files
on the window; show the file in its folder; remove from the library (the file stays); make one
the default model for new sessions. The selected model's card and a sample picture show beside
the table; hashes missing from the library are computed in the background.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSize, QSortFilterProxyModel, Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QIcon, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSplitter,
    QStyle,
    QTableView,
    QVBoxLayout,
)

from desktop.images import MODEL_SUFFIXES, local_path
from desktop.state.models import ModelInfo, ModelLibrary
from desktop.widgets.model_card import HashWorker, ModelCardView, kind_text, thumbnail
from engine.errors import EaselError

COLUMNS = ("Name", "Kind", "Base", "Variant", "Size", "Hash", "Status")
HASH_COLUMN = COLUMNS.index("Hash")
ICON_SIDE = 40
ALL = "All"


def format_size(size: int) -> str:
    if size <= 0:
        return "—"
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit in ("B", "KB") else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


def variant_text(variant: str) -> str:
    """'dev,Q8_0' -> 'dev · Q8_0' (model variant, then how it is stored)."""
    return " · ".join(part for part in variant.split(",") if part) or "—"


ENCODER_NAMES = {"clip-l": "CLIP-L", "clip-g": "CLIP-G", "clip-h": "OpenCLIP-H", "t5-xxl": "T5-XXL"}


def part_summary(kind: str, variant: str) -> str:
    """What a separate part (a text encoder or a 16-channel VAE) is for."""
    parts = [p for p in variant.split(",") if p]
    if kind == "text_encoder":
        name = ENCODER_NAMES.get(parts[0], "text encoder") if parts else "text encoder"
        uses = "SD3 and FLUX.1" if parts and parts[0] != "clip-h" else "SD3 / FLUX"
        return (
            f"{name} text encoder: a part, not a model to pick. Easel loads it with {uses} "
            "transformer-only files (with no diffusers folder beside them)."
        )
    if kind == "vae" and "16-channel" in parts:
        return (
            "16-channel VAE (SD3 / FLUX.1): Easel loads it with transformer-only files of "
            "those families."
        )
    return ""


def family_summary(base: str, variant: str) -> str:
    """What an SD3/FLUX model runs and is made for, from the engine's family table."""
    from engine.sd.modern_families import FAMILIES, MODERN_BASES, model_variant

    if base not in MODERN_BASES:
        return ""
    spec = FAMILIES.get((base, model_variant(variant))) or FAMILIES.get((base, ""))
    if spec is None:
        return ""
    guidance = {"cfg": "CFG", "distilled": "distilled guidance", "none": "no guidance"}
    defaults = spec.defaults
    made_for = f"made for {defaults.steps} steps at guidance {defaults.guidance_scale:g}"
    if spec.control == "any":  # Canny or Depth: the file does not say, the unit's map does
        made_for = "Canny or Depth (the control unit's preprocessor says which: 50 steps at 30, "
        made_for += "or 30 at 10)"
    text = (
        f"{spec.title}: {', '.join(m.value for m in spec.modes)}; {guidance[spec.guidance]}; "
        f"{made_for}; sizes in multiples of {spec.size_multiple}; offload chosen from its size "
        "when it runs"
    )
    if spec.control:
        kind = f"a {spec.control} map" if spec.control != "any" else "an edge or depth map"
        text += f". Needs a control image ({kind}, one control unit, no ControlNet)"
    return text


class _Filter(QSortFilterProxyModel):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.text = ""
        self.kind = ALL
        self.base = ALL

    def filterAcceptsRow(self, row, parent) -> bool:  # noqa: N802 - Qt override
        model = self.sourceModel()
        cells = [model.index(row, c, parent).data() or "" for c in range(len(COLUMNS))]
        if self.kind != ALL and cells[1] != self.kind:
            return False
        if self.base != ALL and cells[2] != self.base:
            return False
        return self.text.lower() in " ".join(cells).lower()


class ModelBrowser(QDialog):
    default_chosen = Signal(str)
    message = Signal(str)

    def __init__(self, library: ModelLibrary, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Models")
        self.resize(1180, 600)
        self.setAcceptDrops(True)
        self.library = library
        self.model = QStandardItemModel(0, len(COLUMNS), self)
        self.model.setHorizontalHeaderLabels(COLUMNS)
        self.proxy = _Filter(self)
        self.proxy.setSourceModel(self.model)
        self.hashes = HashWorker(self)
        self.hashes.hashed.connect(self._hash_arrived)
        self._icons: dict[str, QIcon] = {}
        self._hashes: dict[str, str] = {}  # short hashes the worker found, by reference
        self._build()
        library.changed.connect(self.refresh)
        self.refresh()

    def _build(self) -> None:
        layout = QVBoxLayout(self)
        layout.setContentsMargins(14, 14, 14, 14)
        filters = QHBoxLayout()
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search models…")
        self.search.setClearButtonEnabled(True)
        self.kind = QComboBox()
        self.base = QComboBox()
        filters.addWidget(self.search, 1)
        filters.addWidget(QLabel("Kind"))
        filters.addWidget(self.kind)
        filters.addWidget(QLabel("Base"))
        filters.addWidget(self.base)
        layout.addLayout(filters)
        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setSortingEnabled(True)
        self.table.verticalHeader().hide()
        self.table.setAlternatingRowColors(True)
        self.table.setIconSize(QSize(ICON_SIDE, ICON_SIDE))
        self.table.verticalHeader().setDefaultSectionSize(ICON_SIDE + 6)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column in range(1, len(COLUMNS)):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        self.card_view = ModelCardView()
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.table)
        split.addWidget(self.card_view)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        split.setChildrenCollapsible(False)
        layout.addWidget(split, 1)
        self.detail = QLabel("Drop .safetensors or .gguf files here to import them.")
        self.detail.setObjectName("note")
        self.detail.setWordWrap(True)
        layout.addWidget(self.detail)
        layout.addLayout(self._build_buttons())
        self.search.textChanged.connect(self._filter_changed)
        self.kind.currentTextChanged.connect(self._filter_changed)
        self.base.currentTextChanged.connect(self._filter_changed)
        self.table.selectionModel().selectionChanged.connect(self._selection_changed)

    def _build_buttons(self) -> QHBoxLayout:
        row = QHBoxLayout()
        icon = self.style().standardIcon
        self.import_button = QPushButton(icon(QStyle.StandardPixmap.SP_DialogOpenButton), "Import…")
        self.show_button = QPushButton(icon(QStyle.StandardPixmap.SP_DirIcon), "Show in folder")
        self.remove_button = QPushButton(icon(QStyle.StandardPixmap.SP_TrashIcon), "Remove")
        self.default_button = QPushButton(
            icon(QStyle.StandardPixmap.SP_DialogApplyButton), "Set as default"
        )
        close = QPushButton("Close")
        for button in (self.import_button, self.show_button, self.remove_button):
            row.addWidget(button)
        row.addStretch(1)
        row.addWidget(self.default_button)
        row.addWidget(close)
        self.import_button.clicked.connect(self.import_dialog)
        self.show_button.clicked.connect(self.show_in_folder)
        self.remove_button.clicked.connect(self.remove_selected)
        self.default_button.clicked.connect(self.set_default)
        close.clicked.connect(self.accept)
        return row

    # -- content ------------------------------------------------------------------------------
    def refresh(self) -> None:
        # a rescan (a file dropped in a models folder, a hash found) rebuilds the rows: the model
        # the user is reading about stays selected and its card stays up
        chosen = self.selected()
        self.model.removeRows(0, self.model.rowCount())
        for info in self.library.models:
            cells = [
                info.name,
                kind_text(info.kind),
                info.base or "—",
                variant_text(info.variant),
                format_size(info.size_bytes),
                info.short_hash or self._hashes.get(info.reference) or "—",
                info.status if not info.reason else f"{info.status}: {info.reason}",
            ]
            row = [QStandardItem(text) for text in cells]
            for item in row:
                item.setEditable(False)
                item.setData(info.reference, Qt.ItemDataRole.UserRole)
                if info.status != "ok":
                    item.setToolTip(info.reason)
            icon = self._icon(info)
            if icon is not None:
                row[0].setIcon(icon)
            self.model.appendRow(row)
        if self.isVisible():
            self._request_hashes()
        self._fill_filter(self.kind, sorted({kind_text(m.kind) for m in self.library.models}))
        self._fill_filter(self.base, sorted({m.base or "—" for m in self.library.models}))
        if chosen is not None:
            self.select(chosen.reference)
        self._selection_changed()

    def _icon(self, info: ModelInfo) -> QIcon | None:
        if info.reference not in self._icons:
            pixmap = thumbnail(info.path, ICON_SIDE) if info.path else None
            self._icons[info.reference] = QIcon(pixmap) if pixmap is not None else None
        return self._icons[info.reference]

    def _request_hashes(self) -> None:
        """Hash what the library has no hash for yet (only while the browser is shown)."""
        for info in self.library.models:
            known = info.short_hash or info.reference in self._hashes
            if not known and info.status in ("ok", "unknown"):
                self.hashes.request(info.reference, info.path)

    def showEvent(self, event) -> None:  # noqa: N802 - Qt naming
        super().showEvent(event)
        self._request_hashes()

    def _hash_arrived(self, reference: str, value: str) -> None:
        # kept here too: a refresh (the library rescanned) rebuilds the rows from the library's
        # records, and the worker answers each model once
        self._hashes[reference] = value
        for row in range(self.model.rowCount()):
            item = self.model.item(row, HASH_COLUMN)
            if item.data(Qt.ItemDataRole.UserRole) == reference:
                item.setText(value)

    def hash_text(self, reference: str) -> str:
        for row in range(self.model.rowCount()):
            item = self.model.item(row, HASH_COLUMN)
            if item.data(Qt.ItemDataRole.UserRole) == reference:
                return item.text()
        return ""

    def done(self, result: int) -> None:
        self.hashes.stop()
        super().done(result)

    @staticmethod
    def _fill_filter(combo: QComboBox, values: list[str]) -> None:
        current = combo.currentText() or ALL
        combo.blockSignals(True)
        combo.clear()
        combo.addItems([ALL, *values])
        combo.setCurrentText(current if current in values else ALL)
        combo.blockSignals(False)

    def _filter_changed(self) -> None:
        self.proxy.text = self.search.text()
        self.proxy.kind = self.kind.currentText() or ALL
        self.proxy.base = self.base.currentText() or ALL
        self.proxy.invalidate()

    def selected(self) -> ModelInfo | None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return None
        return self.library.find(rows[0].data(Qt.ItemDataRole.UserRole))

    def select(self, reference: str) -> None:
        for row in range(self.proxy.rowCount()):
            if self.proxy.index(row, 0).data(Qt.ItemDataRole.UserRole) == reference:
                self.table.selectRow(row)
                return

    def _selection_changed(self, *args) -> None:
        info = self.selected()
        self.card_view.show_model(info)
        for button in (self.show_button, self.remove_button, self.default_button):
            button.setEnabled(info is not None)
        if info is not None:
            self.remove_button.setEnabled(not info.reference.startswith("builtin:"))
            self.default_button.setEnabled(info.usable)
            text = info.path
            runs = family_summary(info.base, info.variant) or part_summary(info.kind, info.variant)
            if runs:
                text += f"\n{runs}"
            if info.reason:
                text += f"\n{info.status}: {info.reason}"
            self.detail.setText(text)

    # -- actions ------------------------------------------------------------------------------
    def import_dialog(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(
            self, "Import models", "", "Models (*.safetensors *.ckpt *.gguf)"
        )
        self.import_paths([Path(p) for p in paths])

    def import_paths(self, paths: list[Path]) -> int:
        imported = 0
        for path in paths:
            try:
                self.library.import_file(str(path))
                imported += 1
            except EaselError as exc:
                self.message.emit(str(exc))
        if imported:
            self.message.emit(f"Imported {imported} model{'s' if imported > 1 else ''}.")
        return imported

    def show_in_folder(self) -> None:
        info = self.selected()
        if info is not None:
            folder = Path(info.path) if Path(info.path).is_dir() else Path(info.path).parent
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))

    def remove_selected(self) -> None:
        info = self.selected()
        if info is None:
            return
        try:
            self.library.remove(info)
            self.message.emit(f"Removed {info.name} from the library (the file is kept).")
        except EaselError as exc:
            self.message.emit(str(exc))

    def set_default(self) -> None:
        info = self.selected()
        if info is not None and info.usable:
            self.default_chosen.emit(info.reference)
            self.message.emit(f"{info.name} is now the default model.")

    # -- drop .safetensors -------------------------------------------------------------------
    def dragEnterEvent(self, event) -> None:  # noqa: N802
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802
        paths = []
        for url in event.mimeData().urls():
            try:
                path = local_path(url)
            except EaselError as exc:
                self.message.emit(str(exc))
                continue
            if path.suffix.lower() in MODEL_SUFFIXES or path.is_dir():
                paths.append(path)
            else:
                self.message.emit(f"'{path.name}' is not a .safetensors or .gguf model file.")
        self.import_paths(paths)
        event.acceptProposedAction()
