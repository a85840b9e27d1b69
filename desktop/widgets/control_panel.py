"""The Control panel, beside the prompt panel: ControlNet units, image prompts, regional prompts
and the hires fix, bound to `ControlState` (desktop/state/control.py).

Each unit is a card: its ControlNet model, preprocessor, weight, start/end range, guess mode and
the control image as a thumbnail with where it comes from (the sketch layer, the canvas picture
or a file: chosen, or dropped on the thumbnail). The whole panel follows the chosen model's
`Capabilities.control`: for a model that cannot be steered it is disabled and says why (what is
set stays, and is not sent). Image prompts, regions and the hires fix are in
`control_sections.py`.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QEvent, QSize, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from desktop.state.control import SOURCE_FILE, SOURCE_LABELS, SOURCES, ControlState, UnitState
from desktop.state.generation import GenerationSettings
from desktop.state.models import ModelInfo, ModelLibrary
from desktop.widgets.control_sections import (
    HiresSection,
    ImagePromptSection,
    RegionSection,
    Thumbnail,
    image_file_filter,
    section_label,
)
from engine.api_control import MAX_CONTROL_UNITS, PREPROCESSORS
from engine.paths import models_dir

PREPROCESSOR_LABELS = {
    "none": "None (already a control map)",
    "canny": "Canny edges",
    "softedge": "Soft edges",
    "lineart": "Line art",
    "scribble": "Scribble (strokes as drawn)",
    "depth": "Depth",
}
CONTROLNET_KINDS = ("controlnet",)


def controlnet_models(library: ModelLibrary) -> tuple[list[ModelInfo], bool]:
    """(models to offer, whether they are ControlNets). The library's ControlNets when the
    probe found any; else every usable library file, so a ControlNet the probe does not know
    yet can still be picked."""
    found = [m for m in library.of_kind(*CONTROLNET_KINDS) if m.status == "ok"]
    if found:
        return found, True
    others = [m for m in library.models if m.status == "ok" and m.kind not in ("native",)]
    return [m for m in others if not m.reference.startswith("builtin:")], False


def empty_state_text() -> str:
    return f"No ControlNet in your library: put one in {models_dir() / 'controlnet'}"


class UnitCard(QFrame):
    """One ControlNet unit's settings; writes each change into the state at `index`."""

    def __init__(self, panel: ControlPanel, index: int):
        super().__init__()
        self.panel, self.index = panel, index
        self.setObjectName("controlUnit")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self._updating = False
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 6, 8, 8)
        layout.setSpacing(6)
        header = QHBoxLayout()
        self.title = QLabel(f"<b>Unit {index + 1}</b>")
        self.remove = QToolButton()
        self.remove.setText("Remove")
        self.remove.setToolTip("Remove this control unit")
        self.remove.clicked.connect(lambda: panel.control.remove_unit(self.index))
        header.addWidget(self.title, 1)
        header.addWidget(self.remove)
        layout.addLayout(header)
        layout.addLayout(self._image_row())
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.model = QComboBox()
        self.model.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.model.setMinimumContentsLength(12)
        self.model.activated.connect(self._model_chosen)
        self.browse_model = QToolButton()
        self.browse_model.setText("…")
        self.browse_model.setToolTip("Choose a ControlNet file or folder")
        self.browse_model.clicked.connect(self._browse_model)
        form.addRow("Model", _row(self.model, self.browse_model))
        self.preprocessor = QComboBox()
        for name in PREPROCESSORS:
            self.preprocessor.addItem(PREPROCESSOR_LABELS.get(name, name), name)
        self.preprocessor.activated.connect(
            lambda: self._write(preprocessor=self.preprocessor.currentData())
        )
        form.addRow("Preprocessor", self.preprocessor)
        self.weight = _spin(0.0, 2.0, 0.05, "How strongly the control map steers")
        self.weight.valueChanged.connect(lambda v: self._write(weight=v))
        form.addRow("Weight", self.weight)
        self.start = _spin(0.0, 0.95, 0.05, "Steer from this fraction of the steps")
        self.end = _spin(0.05, 1.0, 0.05, "Stop steering after this fraction of the steps")
        self.start.valueChanged.connect(self._range_edited)
        self.end.valueChanged.connect(self._range_edited)
        form.addRow("Range", _row(self.start, QLabel("to"), self.end))
        self.guess = QCheckBox("Guess mode (no prompt needed)")
        self.guess.toggled.connect(lambda on: self._write(guess_mode=on))
        form.addRow("", self.guess)
        layout.addLayout(form)
        self.form = form
        self.fill_models()
        self.show_unit()
        self.show_own_control(panel.reads_control)

    def show_own_control(self, title: str) -> None:
        """For a model that reads the control image itself (`title`, else ""): only the image
        and its preprocessor matter; no ControlNet, weight, range or guess mode to set."""
        for field in (self.model, self.weight, self.start, self.guess):
            row, _role = self.form.getWidgetPosition(
                field if field in (self.weight, self.guess) else field.parentWidget()
            )
            self.form.setRowVisible(row, not title)

    def _image_row(self) -> QHBoxLayout:
        row = QHBoxLayout()
        self.thumbnail = Thumbnail()
        self.thumbnail.file_dropped.connect(lambda p: self.panel.control.use_file(self.index, p))
        column = QVBoxLayout()
        column.addWidget(QLabel("Control image from"))
        self.source = QComboBox()
        for source in SOURCES:
            self.source.addItem(SOURCE_LABELS[source], source)
        self.source.activated.connect(self._source_chosen)
        column.addWidget(self.source)
        self.choose_file = QPushButton("Choose file…")
        self.choose_file.clicked.connect(self._choose_file)
        column.addWidget(self.choose_file)
        self.source_note = QLabel()
        self.source_note.setObjectName("note")
        self.source_note.setWordWrap(True)
        column.addWidget(self.source_note)
        column.addStretch(1)
        row.addWidget(self.thumbnail, 0, Qt.AlignmentFlag.AlignTop)
        row.addLayout(column, 1)
        return row

    @property
    def unit(self) -> UnitState:
        return self.panel.control.units[self.index]

    def _write(self, **changes) -> None:
        if not self._updating:
            self.panel.control.set_unit(self.index, **changes)

    def _range_edited(self) -> None:
        start, end = self.start.value(), self.end.value()
        if start >= end:  # keep a valid range: the edited side pushes the other
            if self.sender() is self.start:
                end = min(1.0, start + 0.05)
            else:
                start = max(0.0, end - 0.05)
        self._write(start=round(start, 2), end=round(end, 2))
        self.show_unit()

    def _model_chosen(self) -> None:
        reference = self.model.currentData()
        if reference:
            self._write(model=reference)

    def _browse_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "ControlNet model", str(models_dir()), "Models (*.safetensors *.pth *.bin)"
        )
        if path:
            self._write(model=path)
            self.fill_models()

    def _source_chosen(self) -> None:
        source = self.source.currentData()
        if source == SOURCE_FILE and not self.unit.image_path:
            self._choose_file()
            return
        self._write(source=source)

    def _choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Control image", "", image_file_filter())
        if path:
            self.panel.control.use_file(self.index, path)
        else:
            self.show_unit()

    def fill_models(self) -> None:
        models, _are_controlnets = self.panel.controlnets
        self._updating = True
        self.model.clear()
        self.model.addItem("Choose a ControlNet…", "")
        for info in models:
            self.model.addItem(info.name, info.reference)
            self.model.setItemData(self.model.count() - 1, info.path, Qt.ItemDataRole.ToolTipRole)
        current = self.unit.model
        if current and self.model.findData(current) < 0:
            # a file outside the library: its stem, as the library names models (the
            # extension only made the name too long for the panel), the path as tooltip
            self.model.addItem(Path(current).stem or current, current)
            self.model.setItemData(self.model.count() - 1, current, Qt.ItemDataRole.ToolTipRole)
        self.model.setCurrentIndex(max(0, self.model.findData(current)))
        self._updating = False

    def show_unit(self) -> None:
        unit = self.unit
        self._updating = True
        self.preprocessor.setCurrentIndex(max(0, self.preprocessor.findData(unit.preprocessor)))
        self.weight.setValue(unit.weight)
        self.start.setValue(unit.start)
        self.end.setValue(unit.end)
        self.guess.setChecked(unit.guess_mode)
        self.source.setCurrentIndex(self.source.findData(unit.source))
        self.choose_file.setVisible(unit.source == SOURCE_FILE)
        if self.model.findData(unit.model) != self.model.currentIndex():
            self._updating = False
            self.fill_models()
            self._updating = True
        self._updating = False
        self.show_image()

    def show_image(self) -> None:
        unit = self.unit
        image, map_note = self.panel.control.map_preview(unit)  # the map the ControlNet reads
        notes = {
            "sketch": "Draw on the canvas with the Sketch tool (K): white strokes on black.",
            "canvas": "The picture on the canvas, as it is when you press Generate.",
            "file": Path(unit.image_path).name if unit.image_path else "No file chosen yet.",
        }
        empty = {
            "sketch": "The sketch layer is empty",
            "canvas": "The canvas is empty",
            "file": "Choose a file or drop one here",
        }
        self.source_note.setText(f"{notes[unit.source]} {map_note}".strip())
        self.thumbnail.show_image(image, empty[unit.source] if image is None else "")


class ControlPanel(QWidget):
    #: a canvas tool to switch to ("region", "region-eraser", "sketch")
    tool_requested = Signal(str)

    def __init__(
        self,
        control: ControlState,
        library: ModelLibrary,
        settings: GenerationSettings,
        parent=None,
    ):
        super().__init__(parent)
        self.control, self.library, self.settings = control, library, settings
        self.cards: list[UnitCard] = []
        #: the chosen model's title when it reads one control image itself (FLUX.1 Canny)
        self.reads_control = ""
        self.controlnets: tuple[list[ModelInfo], bool] = controlnet_models(library)
        self._build()
        self._thumbs = QTimer(self)  # a stroke repaints the sketch often: thumbnails follow
        self._thumbs.setSingleShot(True)
        self._thumbs.setInterval(120)
        self._thumbs.timeout.connect(self._refresh_thumbnails)
        control.units_changed.connect(self._rebuild_cards)
        control.unit_changed.connect(self._unit_changed)
        control.document.sketch_changed.connect(self._thumbs.start)
        control.document.image_changed.connect(self._thumbs.start)
        library.changed.connect(self._library_changed)
        settings.changed.connect(lambda name: name == "model" and self.show_capabilities())
        settings.changed.connect(lambda name: name in ("width", "height") and self._show_size())
        self._show_size()
        self._rebuild_cards()
        self.show_capabilities()

    def _show_size(self) -> None:
        size = (int(self.settings.get("width")), int(self.settings.get("height")))
        self.hires_section.show_final_size(*size)

    def _build(self) -> None:
        content = QWidget()
        layout = QVBoxLayout(content)
        layout.setContentsMargins(12, 10, 12, 10)
        layout.setSpacing(8)
        self.disabled_note = QLabel()
        self.disabled_note.setObjectName("note")
        self.disabled_note.setWordWrap(True)
        layout.addWidget(self.disabled_note)
        self.body = QWidget()
        body = QVBoxLayout(self.body)
        body.setContentsMargins(0, 0, 0, 0)
        body.setSpacing(8)
        self.units_label = section_label("ControlNet")
        body.addWidget(self.units_label)
        self.empty_note = QLabel()
        self.empty_note.setObjectName("note")
        self.empty_note.setWordWrap(True)
        self.empty_note.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        body.addWidget(self.empty_note)
        self.cards_box = QVBoxLayout()
        self.cards_box.setSpacing(8)
        body.addLayout(self.cards_box)
        self.add_unit = QPushButton("Add control unit")
        self.add_unit.setToolTip(f"Up to {MAX_CONTROL_UNITS} units steer one picture together")
        self.add_unit.clicked.connect(self._add_unit)
        body.addWidget(self.add_unit)
        self.image_prompts = ImagePromptSection(self.control, self.library)
        body.addWidget(self.image_prompts)
        self.region_section = RegionSection(self.control.regions)
        self.region_section.tool_requested.connect(self.tool_requested)
        body.addWidget(self.region_section)
        self.hires_section = HiresSection(self.control, self.library)
        body.addWidget(self.hires_section)
        layout.addWidget(self.body)
        layout.addStretch(1)
        scroll = self.scroll = _VerticalScroll()
        scroll.setWidget(content)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)

    # -- state -> widgets -------------------------------------------------------------------
    def _add_unit(self) -> None:
        models, are_controlnets = self.controlnets
        default = models[0].reference if are_controlnets and len(models) == 1 else ""
        if self.control.add_unit(model=default) is not None:
            self.tool_requested.emit("sketch")  # the shortest flow: draw, then Generate

    def _rebuild_cards(self) -> None:
        for card in self.cards:
            self.cards_box.removeWidget(card)
            card.hide()  # gone now, not at the next event loop turn (deleteLater)
            card.setParent(None)
            card.deleteLater()
        self.cards = [UnitCard(self, i) for i in range(len(self.control.units))]
        for card in self.cards:
            self.cards_box.addWidget(card)
        self._show_unit_limit()

    def _show_unit_limit(self) -> None:
        most = 1 if self.reads_control else MAX_CONTROL_UNITS
        full = len(self.control.units) >= most
        self.add_unit.setEnabled(not full)
        text = f"At most {most} control units" if most > 1 else "One control image for this model"
        self.add_unit.setText(text if full else "Add control unit")

    def _unit_changed(self, index: int) -> None:
        if 0 <= index < len(self.cards):
            self.cards[index].show_unit()

    def _refresh_thumbnails(self) -> None:
        for card in self.cards:
            card.show_image()

    def _library_changed(self) -> None:
        self.controlnets = controlnet_models(self.library)
        for card in self.cards:
            card.fill_models()
        self.hires_section.fill_upscalers()
        self.image_prompts.fill_adapters()
        self.show_capabilities()

    def show_capabilities(self) -> None:
        """Enable the panel from the chosen model's declaration; say why when it is off."""
        caps = self.library.capabilities(self.settings.get("model"))
        self.body.setEnabled(caps.control)
        self.disabled_note.setVisible(not caps.control or bool(caps.reads_control))
        if not caps.control:
            self.disabled_note.setText(
                f"{caps.name} cannot be steered: ControlNet, image prompts, regional prompts "
                "and the hires fix work with SD 1.x and SDXL models (FLUX.1 Canny / Depth dev "
                "take one control image). Choose one in the Generate panel; what you set here "
                "is kept and not sent."
            )
        self._show_own_control(caps.reads_control)
        _models, are_controlnets = self.controlnets
        self.empty_note.setVisible(not are_controlnets and not caps.reads_control)
        # a long path has no spaces to wrap at: let it break after each separator
        self.empty_note.setText(empty_state_text().replace("/", "/\u200b"))
        self.empty_note.setToolTip(empty_state_text())

    def _show_own_control(self, title: str) -> None:
        """A FLUX.1 Canny / Depth model reads unit 1's picture itself, at full strength; image
        prompts, regions and the hires fix are off (kept, not sent)."""
        self.reads_control = title
        self.units_label.setText("CONTROL IMAGE" if title else "CONTROLNET")
        if title:
            self.disabled_note.setText(
                f"{title} reads one control image itself: unit 1's picture, through its "
                "preprocessor, at full strength over every step (no ControlNet to choose). "
                "Image prompts, regional prompts and the hires fix are not used with it."
            )
        for section in (self.image_prompts, self.region_section, self.hires_section):
            section.setEnabled(not title)
        for card in self.cards:
            card.show_own_control(title)
        self._show_unit_limit()

    @property
    def enabled_for_model(self) -> bool:
        return self.body.isEnabled()


def _spin(low: float, high: float, step: float, tip: str) -> QDoubleSpinBox:
    spin = QDoubleSpinBox()
    spin.setRange(low, high)
    spin.setSingleStep(step)
    spin.setDecimals(2)
    spin.setToolTip(tip)
    return spin


def _row(*widgets) -> QWidget:
    holder = QWidget()
    row = QHBoxLayout(holder)
    row.setContentsMargins(0, 0, 0, 0)
    row.setSpacing(4)
    for widget in widgets:
        row.addWidget(widget, 1 if isinstance(widget, (QComboBox, QDoubleSpinBox)) else 0)
    return holder


class _VerticalScroll(QScrollArea):
    """Scrolls up and down only, so it asks for the width its content needs: a dock narrower
    than the cards would cut their right edge off (buttons, spin arrows) with no way to see it."""

    def eventFilter(self, watched, event) -> bool:
        if watched is self.widget() and event.type() == QEvent.Type.LayoutRequest:
            self.updateGeometry()  # a card, a prompt row or a region came or went
        return super().eventFilter(watched, event)

    def minimumSizeHint(self) -> QSize:
        hint = super().minimumSizeHint()
        inner = self.widget()
        if inner is None:
            return hint
        width = (
            inner.minimumSizeHint().width()
            + self.verticalScrollBar().sizeHint().width()
            + 2 * self.frameWidth()
        )
        return QSize(max(hint.width(), width), hint.height())
