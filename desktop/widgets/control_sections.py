"""The Control panel's lower sections: image prompts (IP-Adapter references), regional prompts
(the canvas's region layers, each with its prompt and weight) and the hires fix."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from desktop.images import IMAGE_SUFFIXES
from desktop.state.control import ControlState
from desktop.state.models import ModelLibrary
from desktop.state.regions import RegionLayers
from engine.api_control import (
    HIRES_UPSCALER_LANCZOS,
    HIRES_UPSCALERS_LATENT,
    MAX_IMAGE_PROMPTS,
    MAX_REGIONS,
)
from engine.paths import models_dir

BASE_LABELS = {"sd1": "SD 1.5", "sd2": "SD 2.x", "sdxl": "SDXL"}

THUMB = 96
SMALL_THUMB = 44


def section_label(text: str) -> QLabel:
    label = QLabel(text.upper())
    label.setObjectName("section")
    return label


def _weight_spin(value: float, top: float, tip: str) -> QDoubleSpinBox:
    spin = QDoubleSpinBox()
    spin.setRange(0.0, top)
    spin.setSingleStep(0.05)
    spin.setDecimals(2)
    spin.setValue(value)
    spin.setToolTip(tip)
    return spin


def _clear(layout) -> None:
    while layout.count():
        item = layout.takeAt(0)
        widget = item.widget()
        if widget is not None:
            widget.hide()  # gone now, not at the next event loop turn (deleteLater)
            widget.setParent(None)
            widget.deleteLater()


def image_file_filter() -> str:
    return f"Images ({' '.join(f'*{s}' for s in sorted(IMAGE_SUFFIXES))})"


def scaled_pixmap(image: QImage | None, side: int) -> QPixmap:
    """`image` fitted into a `side` square on a dark tile (an empty tile when None)."""
    tile = QPixmap(side, side)
    tile.fill(QColor(30, 32, 36))
    if image is None or image.isNull():
        return tile
    scaled = QPixmap.fromImage(image).scaled(
        side, side, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation
    )
    painter = QPainter(tile)
    painter.drawPixmap((side - scaled.width()) // 2, (side - scaled.height()) // 2, scaled)
    painter.end()
    return tile


class Thumbnail(QLabel):
    """A control image preview that takes a dropped image file."""

    file_dropped = Signal(str)

    def __init__(self, side: int = THUMB, parent=None):
        super().__init__(parent)
        self.side = side
        self.setFixedSize(QSize(side, side))
        self.setAcceptDrops(True)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setToolTip("Drop an image here to use it as the control image")
        self.show_image(None)

    def show_image(self, image: QImage | None, empty_text: str = "") -> None:
        self.setPixmap(scaled_pixmap(image, self.side))
        self.setToolTip(empty_text or "Drop an image here to use it as the control image")

    def dragEnterEvent(self, event) -> None:  # noqa: N802 - Qt override
        if _dropped_image(event.mimeData()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event) -> None:  # noqa: N802
        path = _dropped_image(event.mimeData())
        if path:
            self.file_dropped.emit(path)
            event.acceptProposedAction()


def _dropped_image(mime) -> str:
    for url in mime.urls() if mime.hasUrls() else []:
        if url.isLocalFile() and Path(url.toLocalFile()).suffix.lower() in IMAGE_SUFFIXES:
            return url.toLocalFile()
    return ""


class ElidedLabel(QLabel):
    """A file name shortened in the middle (…) when the row is narrow, never cut off."""

    def __init__(self, text: str, parent=None):
        super().__init__(text, parent)
        self.full_text = text
        self.setMinimumWidth(60)
        # the row gives it what is left; its own text must not widen the dock
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        metrics = self.fontMetrics()
        self.setText(metrics.elidedText(self.full_text, Qt.TextElideMode.ElideMiddle, self.width()))


def ip_adapter_empty_text() -> str:
    models = models_dir()
    return (
        f"No IP-Adapter in your library: put one in {models / 'ipadapter'} and its CLIP image "
        f"encoder folder in {models / 'clip_vision'}"
    )


class ImagePromptSection(QWidget):
    """Reference pictures that steer the result through an IP-Adapter; several blend."""

    def __init__(self, control: ControlState, library: ModelLibrary | None = None, parent=None):
        super().__init__(parent)
        self.control = control
        self.library = library
        self._updating = False
        self.setAcceptDrops(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 8, 0, 0)
        layout.setSpacing(6)
        layout.addWidget(section_label("Image prompts"))
        self.empty_note = QLabel()
        self.empty_note.setObjectName("note")
        self.empty_note.setWordWrap(True)
        self.empty_note.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.empty_note)
        chooser = QHBoxLayout()
        self.adapter_label = QLabel("IP-Adapter")
        self.adapter = QComboBox()
        self.adapter.setToolTip(
            "The IP-Adapter every reference goes through; Automatic: the library's one for "
            "the model's base"
        )
        self.adapter.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.adapter.setMinimumContentsLength(8)
        self.adapter.currentIndexChanged.connect(self._adapter_chosen)
        chooser.addWidget(self.adapter_label)
        chooser.addWidget(self.adapter, 1)
        layout.addLayout(chooser)
        self.rows = QVBoxLayout()
        self.rows.setSpacing(4)
        layout.addLayout(self.rows)
        self.add = QPushButton("Add reference picture…")
        self.add.setToolTip(
            "The result borrows the look of the reference (IP-Adapter); drop pictures here too"
        )
        self.add.clicked.connect(self._choose)
        layout.addWidget(self.add)
        control.image_prompts_changed.connect(self.show_prompts)
        self.fill_adapters()
        self.show_prompts()

    def fill_adapters(self) -> None:
        """The library's IP-Adapters; the note says where to put one when there is none."""
        found = []
        if self.library is not None:
            found = [m for m in self.library.of_kind("ip_adapter") if m.status == "ok"]
        self._updating = True
        self.adapter.clear()
        self.adapter.addItem("Automatic", "")
        for info in found:
            label = (
                f"{info.name} ({BASE_LABELS.get(info.base, info.base)})" if info.base else info.name
            )
            self.adapter.addItem(label, info.reference)
            self.adapter.setItemData(
                self.adapter.count() - 1, info.path, Qt.ItemDataRole.ToolTipRole
            )
        current = self.control.image_prompt_model
        if current and self.adapter.findData(current) < 0:
            self.adapter.addItem(Path(current).stem or current, current)
        self.adapter.setCurrentIndex(max(0, self.adapter.findData(current)))
        self._updating = False
        none = not found and not current
        self.empty_note.setVisible(none)
        # a long path has no spaces to wrap at: let it break after each separator
        self.empty_note.setText(ip_adapter_empty_text().replace("/", "/\u200b"))
        self.empty_note.setToolTip(ip_adapter_empty_text())
        self.adapter_label.setVisible(not none)
        self.adapter.setVisible(not none)

    def _adapter_chosen(self, index: int) -> None:
        if not self._updating and index >= 0:
            self.control.set_image_prompt_model(str(self.adapter.itemData(index) or ""))

    def _choose(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Reference pictures", "", image_file_filter())
        for path in paths:
            self.control.add_image_prompt(path)

    def show_prompts(self) -> None:
        if self.adapter.currentData() != self.control.image_prompt_model:
            self.fill_adapters()  # restored from a request
        _clear(self.rows)
        for index, prompt in enumerate(self.control.image_prompts):
            row = QWidget()
            line = QHBoxLayout(row)
            line.setContentsMargins(0, 0, 0, 0)
            thumb = Thumbnail(SMALL_THUMB)
            thumb.setAcceptDrops(False)
            thumb.show_image(QImage(prompt.image_path), prompt.image_path)
            name = ElidedLabel(Path(prompt.image_path).name)
            name.setToolTip(prompt.image_path)
            weight = _weight_spin(prompt.weight, 2.0, "How strongly this picture steers")
            weight.valueChanged.connect(
                lambda v, i=index: self.control.set_image_prompt_weight(i, v)
            )
            remove = QToolButton()
            remove.setText("✕")
            remove.setToolTip("Remove this reference")
            remove.clicked.connect(lambda _=False, i=index: self.control.remove_image_prompt(i))
            line.addWidget(thumb)
            line.addWidget(name, 1)
            line.addWidget(weight)
            line.addWidget(remove)
            self.rows.addWidget(row)
        full = len(self.control.image_prompts) >= MAX_IMAGE_PROMPTS
        self.add.setEnabled(not full)
        self.add.setText(
            f"At most {MAX_IMAGE_PROMPTS} references" if full else "Add reference picture…"
        )

    def dragEnterEvent(self, event) -> None:  # noqa: N802 - Qt override
        if _dropped_image(event.mimeData()):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802
        path = _dropped_image(event.mimeData())
        if path:
            self.control.add_image_prompt(path)
            event.acceptProposedAction()


class RegionSection(QWidget):
    """The regions painted on the canvas: colour, prompt, weight; add, paint, erase, delete."""

    tool_requested = Signal(str)

    def __init__(self, regions: RegionLayers, parent=None):
        super().__init__(parent)
        self.regions = regions
        self.prompt_edits: dict[int, QLineEdit] = {}
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 8, 0, 0)
        layout.setSpacing(6)
        layout.addWidget(section_label("Regions"))
        hint = QLabel("Paint where a prompt applies; the base prompt covers the rest.")
        hint.setObjectName("note")
        hint.setWordWrap(True)
        layout.addWidget(hint)
        self.rows = QVBoxLayout()
        self.rows.setSpacing(4)
        layout.addLayout(self.rows)
        buttons = QHBoxLayout()
        self.add = QPushButton("Add region")
        self.add.clicked.connect(self._add)
        self.paint = QPushButton("Paint")
        self.paint.setToolTip("Paint the selected region on the canvas")
        self.paint.clicked.connect(lambda: self.tool_requested.emit("region"))
        self.erase = QPushButton("Erase")
        self.erase.setToolTip("Erase from the selected region")
        self.erase.clicked.connect(lambda: self.tool_requested.emit("region-eraser"))
        buttons.addWidget(self.add, 1)
        buttons.addWidget(self.paint)
        buttons.addWidget(self.erase)
        layout.addLayout(buttons)
        regions.changed.connect(self._list_changed)
        regions.active_changed.connect(lambda _id: self.show_regions())
        self.show_regions()

    def _add(self) -> None:
        region = self.regions.add()
        if region is not None:
            self.tool_requested.emit("region")
            edit = self.prompt_edits.get(region.id)
            if edit is not None:
                edit.setFocus()

    def _list_changed(self) -> None:
        # typing a prompt changes the list too: rebuild only when regions come or go
        if set(self.prompt_edits) != {r.id for r in self.regions.regions}:
            self.show_regions()

    def show_regions(self) -> None:
        _clear(self.rows)
        self.prompt_edits = {}
        for number, region in enumerate(self.regions.regions, 1):
            row = QWidget()
            line = QHBoxLayout(row)
            line.setContentsMargins(0, 0, 0, 0)
            swatch = QToolButton()
            swatch.setCheckable(True)
            swatch.setChecked(region.id == self.regions.active_id)
            swatch.setText(str(number))
            swatch.setToolTip("Select this region to paint it")
            border = "2px solid white" if swatch.isChecked() else "1px solid #555"
            swatch.setStyleSheet(
                f"QToolButton {{ background: {region.colour.name()}; color: black;"
                f" border: {border}; min-width: 22px; min-height: 22px; }}"
            )
            swatch.clicked.connect(lambda _=False, i=region.id: self._select(i))
            prompt = QLineEdit(region.prompt)
            prompt.setPlaceholderText(f"Prompt for region {number}")
            prompt.textEdited.connect(lambda t, i=region.id: self.regions.set_prompt(i, t))
            weight = _weight_spin(region.weight, 4.0, "How strongly the region's prompt applies")
            weight.valueChanged.connect(lambda v, i=region.id: self.regions.set_weight(i, v))
            remove = QToolButton()
            remove.setText("✕")
            remove.setToolTip("Delete this region")
            remove.clicked.connect(lambda _=False, i=region.id: self.regions.remove(i))
            for widget, stretch in ((swatch, 0), (prompt, 1), (weight, 0), (remove, 0)):
                line.addWidget(widget, stretch)
            self.rows.addWidget(row)
            self.prompt_edits[region.id] = prompt
        full = len(self.regions.regions) >= MAX_REGIONS
        self.add.setEnabled(not full)
        self.add.setText(f"At most {MAX_REGIONS} regions" if full else "Add region")
        self.paint.setEnabled(bool(self.regions.regions))
        self.erase.setEnabled(bool(self.regions.regions))

    def _select(self, region_id: int) -> None:
        self.regions.set_active(region_id)
        self.tool_requested.emit("region")


class HiresSection(QGroupBox):
    """Hires fix: make the picture at size ÷ scale, upscale it, then refine to the size set."""

    def __init__(self, control: ControlState, library: ModelLibrary, parent=None):
        super().__init__("Hires fix", parent)
        self.control, self.library = control, library
        self._updating = False
        self.setCheckable(True)
        self.setToolTip(
            "The size in the Generate panel is the final size: the first pass is made at that "
            "size divided by the scale, enlarged, then refined at the strength set here."
        )
        form = QFormLayout(self)
        self.scale = QDoubleSpinBox()
        self.scale.setRange(1.25, 4.0)
        self.scale.setSingleStep(0.25)
        self.scale.setSuffix(" ×")
        self.strength = _weight_spin(0.5, 1.0, "How much the second pass may change")
        self.strength.setMinimum(0.05)
        self.upscaler = QComboBox()
        self.upscaler.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.upscaler.setMinimumContentsLength(10)
        self.steps = QSpinBox()
        self.steps.setRange(0, 500)
        self.steps.setSpecialValueText("Same as first pass")
        form.addRow("Scale", self.scale)
        form.addRow("Strength", self.strength)
        form.addRow("Upscaler", self.upscaler)
        form.addRow("Steps", self.steps)
        self.sizes = QLabel()
        self.sizes.setObjectName("note")
        self.sizes.setWordWrap(True)
        form.addRow(self.sizes)
        self._final_size = (0, 0)
        self.fill_upscalers()
        self.toggled.connect(lambda on: self._write(enabled=on))
        self.scale.valueChanged.connect(lambda v: self._write(scale=v))
        self.strength.valueChanged.connect(lambda v: self._write(strength=v))
        self.upscaler.activated.connect(lambda: self._write(upscaler=self.upscaler.currentData()))
        self.steps.valueChanged.connect(lambda v: self._write(steps=v))
        control.hires_changed.connect(self.show_hires)
        self.show_hires()

    def _write(self, **changes) -> None:
        if not self._updating:
            self.control.set_hires(**changes)

    def fill_upscalers(self) -> None:
        self._updating = True
        self.upscaler.clear()
        self.upscaler.addItem("Latent (no model)", HIRES_UPSCALERS_LATENT)
        self.upscaler.addItem("Lanczos (no model)", HIRES_UPSCALER_LANCZOS)
        for info in self.library.of_kind("upscaler"):
            if info.status == "ok":
                self.upscaler.addItem(info.name, info.reference)
        self._updating = False
        self.show_hires()

    def show_hires(self) -> None:
        hires = self.control.hires
        self._updating = True
        self.setChecked(hires.enabled)
        self.scale.setValue(hires.scale)
        self.strength.setValue(hires.strength)
        if self.upscaler.findData(hires.upscaler) < 0:
            self.upscaler.addItem(Path(hires.upscaler).name, hires.upscaler)
        self.upscaler.setCurrentIndex(self.upscaler.findData(hires.upscaler))
        self.steps.setValue(hires.steps)
        self._updating = False
        # the group box disables its children when unchecked; the title stays readable
        for widget in (self.scale, self.strength, self.upscaler, self.steps):
            widget.setEnabled(hires.enabled)
        self._show_sizes()

    def show_final_size(self, width: int, height: int) -> None:
        """The Generate panel's size: the hires fix's final size."""
        self._final_size = (int(width), int(height))
        self._show_sizes()

    def _show_sizes(self) -> None:
        """Say what the two passes make, so a first pass far below the model's size shows."""
        from engine.metadata.a1111_control import first_pass_size

        width, height = self._final_size
        first = first_pass_size(width, height, self.control.hires.scale) if width else None
        self.sizes.setVisible(bool(first) and self.control.hires.enabled)
        if first:
            text = f"First pass {first[0]}×{first[1]}, then refined at {width}×{height}."
            if min(first) < 64:
                text += " Too small to sample: lower the scale or raise the size."
            self.sizes.setText(text)
