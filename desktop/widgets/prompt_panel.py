"""The prompt panel: everything that goes into the next request, bound to GenerationSettings.

Each control writes its value into the settings on change and follows the settings when they
change elsewhere (restore from a PNG, reuse from the gallery), so there is one source of truth.
Generate and Cancel are buttons here; their shortcuts (Ctrl+Enter, Esc) live on the window.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSlider,
    QSpinBox,
    QStyle,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from desktop.state.generation import AUTOGUIDANCE_RANGE, SIZE_PRESETS, GenerationSettings
from desktop.state.models import ModelLibrary
from desktop.widgets.seed_edit import SeedEdit
from desktop.widgets.style_picker import StylePicker
from engine.api import MAX_BATCH, MAX_SIDE, MAX_STEPS, SAMPLERS, Mode

FIRST_RUN_HINT = (
    "emoji-style pictures; add Stable Diffusion models in the model browser for photos and art"
)
MODE_LABELS = {
    Mode.TXT2IMG.value: "Text to image",
    Mode.IMG2IMG.value: "Image to image",
    Mode.INPAINT.value: "Inpaint (masked area)",
}


def _section(text: str) -> QLabel:
    label = QLabel(text.upper())
    label.setObjectName("section")
    return label


class PromptPanel(QWidget):
    generate_requested = Signal()
    cancel_requested = Signal()
    add_lora_requested = Signal()
    #: the Expand button: expand the prompt, or stop the expansion that runs
    expand_requested = Signal()
    expand_cancel_requested = Signal()

    def __init__(self, settings: GenerationSettings, models: ModelLibrary, parent=None):
        super().__init__(parent)
        self.settings = settings
        self.models = models
        self._updating = False
        self._build()
        self._fill_models()
        self._load_all()
        settings.changed.connect(self._setting_changed)
        models.changed.connect(self._fill_models)

    # -- layout -----------------------------------------------------------------------------
    def _build(self) -> None:
        # the settings scroll when the window is short; Generate/Cancel stay visible below them
        content = QWidget()
        layout = QVBoxLayout(content)
        layout.setContentsMargins(12, 10, 12, 10)
        layout.setSpacing(8)
        layout.addWidget(_section("Prompt"))
        self.prompt = QPlainTextEdit()
        self.prompt.setPlaceholderText(FIRST_RUN_HINT)
        self.prompt.setToolTip(
            "Weight words with (word:1.3) or [word]; __colour__ picks a line of "
            "wildcards/colour.txt in the data folder; Ctrl+Up/Down recalls recent prompts; "
            "Ctrl+Enter generates"
        )
        self.prompt.setMinimumHeight(72)
        self.prompt.setMaximumHeight(150)  # the settings below must stay in view on small screens
        self.prompt.setTabChangesFocus(True)
        layout.addWidget(self.prompt, 3)
        self.negative = QPlainTextEdit()
        self.negative.setPlaceholderText("Negative prompt: what to leave out")
        self.negative.setMinimumHeight(44)
        self.negative.setMaximumHeight(90)
        self.negative.setTabChangesFocus(True)
        layout.addWidget(self.negative, 1)
        layout.addLayout(self._build_prompt_tools())
        layout.addWidget(_section("Model"))
        self.model = QComboBox()
        self.model.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.model.setMinimumContentsLength(16)
        layout.addWidget(self.model)
        self.model_note = QLabel()
        self.model_note.setObjectName("note")
        self.model_note.setWordWrap(True)
        self.model_note.hide()
        layout.addWidget(self.model_note)
        layout.addWidget(_section("Settings"))
        layout.addLayout(self._build_form())
        layout.addWidget(_section("LoRA"))
        layout.addWidget(self._build_loras())
        layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidget(content)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.setSpacing(0)
        outer.addWidget(scroll, 1)
        buttons = QWidget()
        buttons.setObjectName("buttonBar")
        buttons.setLayout(self._build_buttons())
        buttons.layout().setContentsMargins(12, 10, 12, 12)
        outer.addWidget(buttons)
        self._connect_inputs()

    def _build_prompt_tools(self) -> QHBoxLayout:
        """One row under the prompts: the style picker and the Expand button."""
        row = QHBoxLayout()
        row.setSpacing(6)
        self.style_picker = StylePicker()
        self.style_picker.style_chosen.connect(lambda name: self._write("style", name))
        self.expand = QPushButton("Expand")
        self.expand.setToolTip(
            "Grow the prompt with matching style and detail words (Ctrl+Shift+P); "
            "undo with Ctrl+Z in the prompt box"
        )
        self.expand.setMinimumWidth(76)  # "Expand" and "Stop" at the same width: no jumping
        self.expand.clicked.connect(self._expand_clicked)
        self._expanding = False
        row.addWidget(self.style_picker, 1)
        row.addWidget(self.expand)
        self.prompt_tools_row = row  # the main window adds the Recent prompts button here
        return row

    def _expand_clicked(self) -> None:
        if self._expanding:
            self.expand_cancel_requested.emit()
        else:
            self.expand_requested.emit()

    def set_expanding(self, running: bool) -> None:
        """While an expansion runs the button stops it."""
        self._expanding = running
        self.expand.setText("Stop" if running else "Expand")
        self.expand.setToolTip(
            "Stop the prompt expansion"
            if running
            else "Grow the prompt with matching style and detail words (Ctrl+Shift+P); "
            "undo with Ctrl+Z in the prompt box"
        )

    def _build_form(self) -> QFormLayout:
        form = QFormLayout()
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        form.setHorizontalSpacing(10)
        form.setVerticalSpacing(6)
        self.mode = QComboBox()
        for value, label in MODE_LABELS.items():
            self.mode.addItem(label, value)
        form.addRow("Mode", self.mode)
        self.mode_note = QLabel()
        self.mode_note.setObjectName("note")
        self.mode_note.setWordWrap(True)
        self.mode_note.hide()
        form.addRow("", self.mode_note)
        self.sampler = QComboBox()
        self.sampler.addItems(SAMPLERS)
        form.addRow("Sampler", self.sampler)
        self.steps = QSpinBox()
        self.steps.setRange(1, MAX_STEPS)
        self.guidance = QDoubleSpinBox()
        self.guidance.setRange(0.0, 50.0)
        self.guidance.setSingleStep(0.5)
        self.guidance.setDecimals(1)
        form.addRow("Steps", self._pair(self.steps, QLabel("Guidance"), self.guidance))
        self.seed = SeedEdit()  # seeds go to 2**64 - 1: no spin box holds them exactly
        self.seed_mode = QComboBox()
        self.seed_mode.addItem("Random", "random")
        self.seed_mode.addItem("Fixed", "fixed")
        self.reuse_seed = QToolButton()
        self.reuse_seed.setIcon(self.style().standardIcon(QStyle.StandardPixmap.SP_BrowserReload))
        self.reuse_seed.setToolTip("Reuse the seed of the last image")
        form.addRow("Seed", self._pair(self.seed_mode, self.seed, self.reuse_seed))
        self.size_preset = QComboBox()
        for label, width, height in SIZE_PRESETS:
            self.size_preset.addItem(label, (width, height))
        self.size_preset.addItem("Custom", None)
        form.addRow("Size", self.size_preset)
        self.width_box, self.height_box = QSpinBox(), QSpinBox()
        for box in (self.width_box, self.height_box):
            box.setRange(8, MAX_SIDE)
            box.setSingleStep(8)
            box.setSuffix(" px")
        form.addRow("", self._pair(self.width_box, QLabel("×"), self.height_box))
        self.size_note = QLabel("Size follows the canvas")
        self.size_note.setObjectName("note")
        form.addRow("", self.size_note)
        self.batch = QSpinBox()
        self.batch.setRange(1, MAX_BATCH)
        form.addRow("Batch", self.batch)
        self.strength = QSlider(Qt.Orientation.Horizontal)
        self.strength.setRange(1, 100)
        self.strength_value = QLabel()
        self.strength_value.setMinimumWidth(34)
        self.strength_row = self._pair(self.strength, self.strength_value)
        form.addRow("Strength", self.strength_row)
        self._strength_label = form.labelForField(self.strength_row)
        self.concepts = QSpinBox()
        self.concepts.setRange(0, 100)
        self.concepts.setSingleStep(10)
        self.concepts.setSuffix(" %")
        self.concepts.setToolTip(
            "How far a prompt this model never learnt is pulled toward the nearest things it "
            "knows (its training captions). 0 % draws the prompt as typed."
        )
        form.addRow("Concepts", self.concepts)
        self.autoguidance = QDoubleSpinBox()
        self.autoguidance.setRange(*AUTOGUIDANCE_RANGE)
        self.autoguidance.setSingleStep(0.5)
        self.autoguidance.setDecimals(1)
        self.autoguidance.setToolTip(
            "How far each step is pushed away from what a weaker, earlier copy of this model "
            "would draw: cleaner, more recognisable shapes. 1.0 is off; each step costs "
            "about half as much again."
        )
        form.addRow("Autoguidance", self.autoguidance)
        self._form = form
        return form

    def _build_loras(self) -> QWidget:
        box = QWidget()
        layout = QVBoxLayout(box)
        layout.setContentsMargins(0, 0, 0, 0)
        self.lora_table = QTableWidget(0, 3)
        self.lora_table.setHorizontalHeaderLabels(["LoRA", "Weight", ""])
        self.lora_table.verticalHeader().hide()
        self.lora_table.horizontalHeader().setStretchLastSection(False)
        self.lora_table.horizontalHeader().setSectionResizeMode(
            0, self.lora_table.horizontalHeader().ResizeMode.Stretch
        )
        self.lora_table.setMaximumHeight(96)
        self.lora_table.hide()
        layout.addWidget(self.lora_table)
        self.add_lora_button = QPushButton("Add LoRA…")
        self.add_lora_button.clicked.connect(self.add_lora_requested)
        layout.addWidget(self.add_lora_button, 0, Qt.AlignmentFlag.AlignLeft)
        return box

    def _build_buttons(self) -> QHBoxLayout:
        row = QHBoxLayout()
        self.generate = QPushButton("Generate")
        self.generate.setObjectName("primary")
        self.generate.setToolTip("Generate (Ctrl+Enter)")
        self.generate.setMinimumHeight(36)
        self.generate.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.cancel = QPushButton("Cancel")
        self.cancel.setToolTip("Cancel (Esc)")
        self.cancel.setMinimumHeight(36)
        self.cancel.setEnabled(False)
        row.addWidget(self.generate, 3)
        row.addWidget(self.cancel, 1)
        self.generate.clicked.connect(self.generate_requested)
        self.cancel.clicked.connect(self.cancel_requested)
        return row

    @staticmethod
    def _pair(*widgets) -> QWidget:
        box = QWidget()
        row = QHBoxLayout(box)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(6)
        for widget in widgets:
            row.addWidget(widget, 1 if not isinstance(widget, (QLabel, QToolButton)) else 0)
        return box

    # -- widgets -> settings ------------------------------------------------------------------
    def _connect_inputs(self) -> None:
        s = self._write
        self.prompt.textChanged.connect(lambda: s("prompt", self.prompt.toPlainText()))
        self.negative.textChanged.connect(lambda: s("negative_prompt", self.negative.toPlainText()))
        self.model.currentIndexChanged.connect(self._model_chosen)
        self.mode.currentIndexChanged.connect(lambda: s("mode", self.mode.currentData()))
        self.sampler.currentTextChanged.connect(lambda text: s("sampler", text))
        self.steps.valueChanged.connect(lambda v: s("steps", v))
        self.guidance.valueChanged.connect(lambda v: s("guidance_scale", round(v, 2)))
        self.seed.valueChanged.connect(lambda v: s("seed", int(v)))
        self.seed_mode.currentIndexChanged.connect(
            lambda: s("seed_mode", self.seed_mode.currentData())
        )
        self.reuse_seed.clicked.connect(self.settings.reuse_last_seed)
        self.size_preset.currentIndexChanged.connect(self._preset_chosen)
        self.width_box.editingFinished.connect(lambda: self._size_edited(self.width_box, "width"))
        self.height_box.editingFinished.connect(
            lambda: self._size_edited(self.height_box, "height")
        )
        self.batch.valueChanged.connect(lambda v: s("batch_size", v))
        self.strength.valueChanged.connect(lambda v: s("strength", v / 100))
        self.concepts.valueChanged.connect(lambda v: s("concept_strength", v / 100))
        self.autoguidance.valueChanged.connect(lambda v: s("autoguidance", float(v)))

    def _model_chosen(self) -> None:
        """A model picked in the list brings the settings it was tuned at (a native model's
        guidance and steps); the user can change them after."""
        reference = self.model.currentData()
        if self._updating or not reference:
            return
        self.settings.set("model", reference)
        for name, value in self.models.made_for(reference).items():
            self.settings.set(name, value)

    def _write(self, name: str, value) -> None:
        if not self._updating:
            self.settings.set(name, value)

    def _preset_chosen(self) -> None:
        size = self.size_preset.currentData()
        if size and not self._updating:
            self.settings.set("width", size[0])
            self.settings.set("height", size[1])

    def _size_edited(self, box: QSpinBox, name: str) -> None:
        """Custom sizes snap to the nearest multiple of 8 (what the models need)."""
        value = max(8, (box.value() + 4) // 8 * 8)
        box.setValue(value)
        self._write(name, value)

    # -- settings -> widgets -------------------------------------------------------------------
    def _load_all(self) -> None:
        for name in ("prompt", "negative_prompt", "model", "mode", "sampler", "steps"):
            self._setting_changed(name)
        for name in ("guidance_scale", "seed", "seed_mode", "width", "batch_size", "strength"):
            self._setting_changed(name)
        self._setting_changed("loras")
        self._setting_changed("style")
        self._setting_changed("concept_strength")
        self._setting_changed("autoguidance")

    def _setting_changed(self, name: str) -> None:
        value = self.settings.get(name)
        self._updating = True
        try:
            self._show(name, value)
        finally:
            self._updating = False

    def _show(self, name: str, value) -> None:
        if name == "prompt" and self.prompt.toPlainText() != value:
            self.prompt.setPlainText(value)
        elif name == "negative_prompt" and self.negative.toPlainText() != value:
            self.negative.setPlainText(value)
        elif name == "model":
            self._select_model(value)
        elif name == "mode":
            self.mode.setCurrentIndex(max(0, self.mode.findData(value)))
            self._mode_shown(value)
        elif name == "sampler":
            self._sampler_choices_shown()
        elif name == "steps":
            self.steps.setValue(int(value))
        elif name == "guidance_scale":
            self.guidance.setValue(float(value))
        elif name == "seed":
            self.seed.setValue(int(value))
        elif name == "seed_mode":
            self.seed_mode.setCurrentIndex(max(0, self.seed_mode.findData(value)))
            self.seed.setEnabled(value == "fixed")
        elif name in ("width", "height"):
            self._size_controls_shown()
        elif name == "batch_size":
            self.batch.setValue(int(value))
        elif name == "strength":
            self.strength.setValue(round(float(value) * 100))
            self.strength_value.setText(f"{float(value):.2f}")
        elif name == "loras":
            self._show_loras(value)
        elif name == "concept_strength":
            self._form.setRowVisible(self.concepts, value is not None)
            if value is not None:
                self.concepts.setValue(round(float(value) * 100))
        elif name == "autoguidance":
            self._form.setRowVisible(self.autoguidance, value is not None)
            if value is not None:
                self.autoguidance.setValue(float(value))
        elif name == "style":
            self.style_picker.set_style(value)

    def _show_size(self) -> None:
        width, height = self.settings.get("width"), self.settings.get("height")
        self.width_box.setValue(width)
        self.height_box.setValue(height)
        index = next(
            (i for i, (_, w, h) in enumerate(SIZE_PRESETS) if (w, h) == (width, height)),
            self.size_preset.count() - 1,  # "Custom"
        )
        self.size_preset.setCurrentIndex(index)

    def _mode_shown(self, mode: str) -> None:
        caps = self.models.capabilities(self.settings.get("model"))
        uses_strength = mode != Mode.TXT2IMG.value and caps.strength
        for widget in (self.strength_row, self._strength_label):
            widget.setVisible(uses_strength)
        self._size_controls_shown()
        self._capabilities_shown()

    def _capabilities_shown(self) -> None:
        """Enable what the chosen model can use, from its one declaration (engine.capabilities):
        the modes it runs, LoRAs, steps and guidance. A mode it cannot run stays chosen (the
        user's choice is not changed behind their back) and the note says what to do."""
        caps = self.models.capabilities(self.settings.get("model"))
        items = self.mode.model()
        for row in range(self.mode.count()):
            item = items.item(row) if hasattr(items, "item") else None
            if item is not None:
                item.setEnabled(caps.supports(self.mode.itemData(row)))
        for widget, usable, why in (
            (self.add_lora_button, caps.loras, "LoRAs adapt Stable Diffusion models"),
            (self.lora_table, caps.loras, "LoRAs adapt Stable Diffusion models"),
            (self.steps, caps.steps, f"{caps.name} takes no steps"),
            (self.guidance, caps.guidance, f"{caps.name} uses no guidance"),
            (self.sampler, bool(caps.samplers), f"{caps.name} uses no sampler"),
        ):
            widget.setEnabled(usable)
            widget.setToolTip("" if usable else why)
        mode = self.settings.get("mode")
        if not caps.supports(mode):
            from engine.capabilities import MODE_TITLES, MODE_WORDS

            chosen = Mode(mode)
            self.mode_note.setText(
                f"{caps.name} cannot {MODE_WORDS[chosen]}. {caps.suggestion} for "
                f"{MODE_TITLES[chosen]}, or pick another mode."
            )
        self.mode_note.setVisible(not caps.supports(mode))

    def _size_controls_shown(self) -> None:
        """Size is free for Stable Diffusion text-to-image; an edit follows the canvas, and a
        built-in (native) model always makes pictures of its own size."""
        fixed = self.models.fixed_size(self.settings.get("model"))
        if fixed and self.settings.get("mode") == Mode.INPAINT.value:
            note = f"Size follows the canvas; the model paints at {fixed} × {fixed}"
        elif fixed:
            note = f"This model makes {fixed} × {fixed} pictures"
        elif self.settings.get("mode") != Mode.TXT2IMG.value:
            note = "Size follows the canvas"
        else:
            note = ""
        for widget in (self.size_preset, self.width_box.parentWidget()):
            widget.setEnabled(not note)
        updating, self._updating = self._updating, True  # showing, not a choice to save
        try:
            if fixed:
                self.width_box.setValue(fixed)
                self.height_box.setValue(fixed)
                self.size_preset.setCurrentIndex(self.size_preset.count() - 1)
            else:
                self._show_size()
        finally:
            self._updating = updating
        self.size_note.setText(note)
        self.size_note.setVisible(bool(note))

    # -- models and LoRAs ---------------------------------------------------------------------
    def _fill_models(self) -> None:
        self._updating = True
        try:
            self.model.clear()
            for info in self.models.models:
                if info.kind not in ("checkpoint", "native", "unknown"):
                    continue
                label = info.name if info.status == "ok" else f"{info.name} — {info.status}"
                self.model.addItem(label, info.reference)
                if info.status != "ok":
                    self.model.setItemData(
                        self.model.count() - 1, info.reason, Qt.ItemDataRole.ToolTipRole
                    )
        finally:
            self._updating = False
        self._select_model(self.settings.get("model"))

    def _select_model(self, reference: str) -> None:
        index = self.model.findData(reference)
        if index < 0 and reference:
            self.model.addItem(reference, reference)
            index = self.model.count() - 1
        self.model.setCurrentIndex(index)
        info = self.models.find(reference)
        if info is not None and info.status != "ok":
            self.model_note.setText(f"{info.name}: {info.reason}")
            self.model_note.show()
        else:
            self.model_note.hide()
        self._size_controls_shown()
        self._sampler_choices_shown()
        self._mode_shown(self.settings.get("mode"))

    def _sampler_choices_shown(self) -> None:
        """All SD samplers, or only those a built-in diffusion model runs; a setting the model
        cannot use shows what will run instead (DDIM), without changing the saved choice."""
        choices = tuple(self.models.samplers_for(self.settings.get("model")) or SAMPLERS)
        wanted = self.settings.get("sampler")
        updating, self._updating = self._updating, True
        try:
            if tuple(self.sampler.itemText(i) for i in range(self.sampler.count())) != choices:
                self.sampler.clear()
                self.sampler.addItems(choices)
            self.sampler.setCurrentText(wanted if wanted in choices else choices[0])
        finally:
            self._updating = updating

    def _show_loras(self, loras: list) -> None:
        table = self.lora_table
        table.setRowCount(0)
        for row, (path, weight) in enumerate(loras):
            table.insertRow(row)
            item = QTableWidgetItem(path.rsplit("/", 1)[-1])
            item.setToolTip(path)
            item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEditable)
            table.setItem(row, 0, item)
            spin = QDoubleSpinBox()
            spin.setRange(-4.0, 4.0)
            spin.setSingleStep(0.05)
            spin.setValue(float(weight))
            spin.valueChanged.connect(lambda v, r=row: self._lora_weight(r, v))
            table.setCellWidget(row, 1, spin)
            remove = QToolButton()
            remove.setIcon(self.style().standardIcon(QStyle.StandardPixmap.SP_DialogCloseButton))
            remove.setToolTip("Remove this LoRA")
            remove.clicked.connect(lambda _=False, r=row: self._remove_lora(r))
            table.setCellWidget(row, 2, remove)
        table.setVisible(bool(loras))

    def _lora_weight(self, row: int, weight: float) -> None:
        loras = [list(x) for x in self.settings.get("loras")]
        loras[row][1] = round(weight, 3)
        self._write("loras", loras)

    def _remove_lora(self, row: int) -> None:
        loras = [list(x) for x in self.settings.get("loras")]
        del loras[row]
        self.settings.set("loras", loras)

    def add_lora(self, path: str, weight: float = 1.0) -> None:
        loras = [list(x) for x in self.settings.get("loras")]
        if all(p != path for p, _ in loras):
            self.settings.set("loras", [*loras, [path, weight]])

    # -- busy state -----------------------------------------------------------------------------
    def set_busy(self, busy: bool) -> None:
        self.cancel.setEnabled(busy)
        self.generate.setText("Queue another" if busy else "Generate")
