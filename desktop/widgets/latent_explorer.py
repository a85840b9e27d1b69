"""The latent explorer: walk the latent space of a native GAN or VAE and see it as a grid.

Pick a native model (the built-in emoji DCGAN and beta-VAE, anything in the user's models
folder, or a folder browsed to), then one of the modes its family supports: interpolate between
two seeds (GANs), mix the styles of two seeds (StyleGAN), interpolate between two pictures or
traverse one latent dimension (VAEs), or plain samples. Explore submits one `GenerationRequest`
whose `extras` carry the mode's knobs (docs/notes/native-models.md); the pictures come back as a
grid, and a click on one opens it on the canvas (`open_image(PIL.Image)`).

Threading follows the Train dialog: the engine's sink only queues events, a GUI-thread timer
drains them. The GUI thread never imports torch: model folders are recognised by reading their
`config.json` as plain JSON.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from desktop.images import pil_to_qimage
from desktop.widgets.job_inbox import JobInbox, job_buttons
from desktop.widgets.train_dialog import SampleGrid, _spin
from engine.errors import EaselError, InputError
from engine.events import Cancelled, Failed, Progress, Result, Started
from engine.families.grid import make_grid

MODES = {
    "interpolate_seeds": "Interpolate between two seeds",
    "style_mix": "Mix the styles of two seeds",
    "interpolate_images": "Interpolate between two pictures",
    "traverse": "Traverse one latent dimension",
    "samples": "Random samples",
}
#: the modes each family's `generate` supports (see its `request.extras` knobs)
FAMILY_MODES = {
    "dcgan": ("interpolate_seeds", "samples"),
    "stylegan": ("interpolate_seeds", "style_mix", "samples"),
    # traverse first: it works without choosing pictures
    "vae": ("traverse", "interpolate_images", "samples"),
    "beta-vae": ("traverse", "interpolate_images", "samples"),
    "nvae": ("samples",),
}
FAMILY_NAMES = {
    "dcgan": "DCGAN",
    "stylegan": "StyleGAN",
    "vae": "VAE",
    "beta-vae": "beta-VAE",
    "nvae": "NVAE",
}
#: which knob rows each mode shows (the rest are hidden)
MODE_KNOBS = {
    "interpolate_seeds": {"seed", "to_seed", "count", "columns", "class", "truncation"},
    "style_mix": {"seed", "to_seed", "count", "columns", "mix_layer", "truncation"},
    "interpolate_images": {"image_a", "image_b", "seed", "count", "columns", "temperature"},
    "traverse": {"image_a", "seed", "dimension", "range", "count", "columns", "temperature"},
    "samples": {"seed", "count", "columns", "class", "truncation", "temperature"},
}
IMAGE_FILTER = "Pictures (*.png *.jpg *.jpeg *.webp *.bmp)"


def native_model_info(folder: Path) -> dict | None:
    """The config of a native GAN/VAE folder the explorer can use, or None (plain JSON)."""
    try:
        config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(config, dict) or config.get("family") not in FAMILY_MODES:
        return None
    return config


def explorable_models() -> list[tuple[str, str, dict]]:
    """(reference, label, config) of the built-in and user native GAN/VAE models."""
    from engine.paths import models_dir, resource

    found = []
    for base, builtin in ((resource("models"), True), (models_dir(), False)):
        folders = sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else []
        for folder in folders:
            config = native_model_info(folder)
            if config is not None:
                reference = f"builtin:{folder.name}" if builtin else str(folder)
                found.append((reference, model_label(folder.name, config, builtin), config))
    return found


def model_label(name: str, config: dict, builtin: bool = False) -> str:
    family = FAMILY_NAMES.get(config.get("family"), config.get("family"))
    where = ", built-in" if builtin else ""
    return f"{name} ({family}, {config.get('resolution', '?')} px{where})"


class ExplorerGrid(SampleGrid):
    """The Train dialog's clickable grid, scaled up by the largest whole number that fits the
    view (explorer grids are the main view), and rescaled when the dialog is resized."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        # the pixmap follows the view's size, never the other way round (no growth loop)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)

    def set_grid(self, image) -> None:
        self.grid = image
        self._rescale()

    def _rescale(self) -> None:
        if self.grid is None:
            return
        width, height = self.grid.size
        room_w, room_h = max(self.width(), width), max(self.height(), height)
        # fill the panel: fractional scales too (a whole number left 32 px pictures at 1x in a
        # large empty panel); tiny pictures stay crisp with nearest neighbour
        self.scale = max(1.0, min(16.0, room_w / width, room_h / height))
        crisp = self.scale >= 2 or max(width, height) <= 128
        mode = Qt.TransformationMode.FastTransformation if crisp else (
            Qt.TransformationMode.SmoothTransformation)  # fmt: skip
        pixmap = QPixmap.fromImage(pil_to_qimage(self.grid))
        target = pixmap.size().scaled(
            int(width * self.scale), int(height * self.scale), Qt.AspectRatioMode.KeepAspectRatio
        )
        self.setPixmap(pixmap.scaled(target, Qt.AspectRatioMode.KeepAspectRatio, mode))

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt naming
        super().resizeEvent(event)
        self._rescale()


class LatentExplorer(JobInbox, QDialog):
    """Interpolate, traverse and mix styles in a native GAN/VAE; click a picture to open it."""

    open_image = Signal(object)  # PIL.Image: the user clicked a picture of the grid
    explore_finished = Signal(str)  # "result" / "failed" / "cancelled"

    def __init__(self, engine_like: Any, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Latent explorer")
        self.engine = engine_like
        self.job_id: int | None = None
        self.columns = 1
        self._rows: dict[str, tuple[QLabel, QWidget]] = {}
        self._build()
        self._init_inbox()
        self._listen(True)
        self.grid_view.picture_clicked.connect(self.open_image)
        for reference, label, config in explorable_models():
            self.model_combo.addItem(label, (reference, config))
        self._model_changed()

    # -- layout ---------------------------------------------------------------------------------
    def _build(self) -> None:
        self.model_combo = QComboBox()
        self.model_combo.currentIndexChanged.connect(self._model_changed)
        browse = QPushButton("Browse…")
        browse.clicked.connect(self.browse_model)
        self.mode_combo = QComboBox()
        self.mode_combo.currentIndexChanged.connect(self._mode_changed)
        self.seed_spin = _spin(0, 2**31 - 1, 0)
        self.to_seed_spin = _spin(0, 2**31 - 1, 1)
        self.count_spin = _spin(2, 64, 8)
        self.columns_spin = _spin(1, 16, 8)
        self.class_combo = QComboBox()
        self.truncation_spin = _double(0.0, 2.0, 0.7, 0.05)
        self.mix_layer_spin = _spin(0, 63, 4)
        # starts on "the dimension that varies most" (-1, found by the engine): with a
        # beta-VAE most dimensions are idle and dimension 0 showed 8 nearly equal pictures
        self.dimension_spin = _spin(-1, 100_000, -1)
        self.dimension_spin.setSpecialValueText("The one that varies most")
        self.range_spin = _double(0.1, 10.0, 3.0, 0.5)
        self.temperature_spin = _double(0.0, 2.0, 1.0, 0.1)
        self.image_a_edit, image_a = self._image_row("Optional: start from this picture")
        self.image_b_edit, image_b = self._image_row("The picture to walk towards")

        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.addRow("Model", _row(self.model_combo, browse))
        form.addRow("Mode", self.mode_combo)
        for key, label, field in (
            ("image_a", "First picture", image_a),
            ("image_b", "Second picture", image_b),
            ("seed", "Seed", self.seed_spin),
            ("to_seed", "Second seed", self.to_seed_spin),
            ("class", "Class", self.class_combo),
            ("dimension", "Latent dimension", self.dimension_spin),
            ("range", "Range (±)", self.range_spin),
            ("mix_layer", "Mix from layer", self.mix_layer_spin),
            ("truncation", "Truncation (psi)", self.truncation_spin),
            ("temperature", "Temperature", self.temperature_spin),
            ("count", "Pictures", self.count_spin),
            ("columns", "Columns", self.columns_spin),
        ):
            form.addRow(label, field)
            self._rows[key] = (form.labelForField(field), field)

        self.explore_button, self.cancel_button, buttons = job_buttons(self, "Explore", "Cancel")
        self.explore_button.clicked.connect(self.explore)

        self.progress_bar = QProgressBar()
        self.status_label = QLabel("Choose a model and a mode, then Explore.")
        self.status_label.setWordWrap(True)
        self.grid_view = ExplorerGrid()
        self.grid_view.setText("The pictures appear here. Click one to open it on the canvas.")
        self.grid_view.setWordWrap(True)
        self.grid_view.setMinimumSize(420, 300)

        left = QVBoxLayout()
        left.addLayout(form)
        left.addStretch(1)
        left.addWidget(self.progress_bar)
        left.addWidget(self.status_label)
        left.addLayout(buttons)
        columns = QHBoxLayout(self)
        columns.addLayout(left, 0)
        columns.addWidget(self.grid_view, 1)
        self.resize(1040, 560)

    def _image_row(self, placeholder: str) -> tuple[QLineEdit, QWidget]:
        edit = QLineEdit()
        edit.setPlaceholderText(placeholder)
        edit.setMinimumWidth(220)
        browse = QPushButton("Browse…")
        browse.clicked.connect(lambda: self._browse_image(edit))
        return edit, _row(edit, browse)

    def _browse_image(self, edit: QLineEdit) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose a picture", edit.text(), IMAGE_FILTER)
        if path:
            edit.setText(path)

    # -- model and mode -------------------------------------------------------------------------
    def browse_model(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose a native model folder")
        if folder:
            self.add_model_folder(folder)

    def add_model_folder(self, folder: str | Path) -> bool:
        """Add (and select) a native GAN/VAE folder; say why when it cannot be explored."""
        folder = Path(folder)
        config = native_model_info(folder)
        if config is None:
            self._show_status(
                f"'{folder}' is not a native GAN or VAE model folder (a config.json whose family "
                f"is one of {', '.join(FAMILY_MODES)}). Train one with Tools > Train a model.",
                error=True,
            )
            return False
        existing = self.model_combo.findText(model_label(folder.name, config))
        if existing < 0:
            self.model_combo.addItem(model_label(folder.name, config), (str(folder), config))
            existing = self.model_combo.count() - 1
        self.model_combo.setCurrentIndex(existing)
        self._show_status(f"Exploring {folder.name}.")
        return True

    def current_model(self) -> tuple[str, dict] | None:
        return self.model_combo.currentData()

    def _model_changed(self) -> None:
        chosen = self.current_model()
        family = chosen[1]["family"] if chosen else None
        previous = self.mode_combo.currentData()
        self.mode_combo.blockSignals(True)
        self.mode_combo.clear()
        for mode in FAMILY_MODES.get(family, ()):
            self.mode_combo.addItem(MODES[mode], mode)
        index = self.mode_combo.findData(previous)
        self.mode_combo.setCurrentIndex(max(0, index))
        self.mode_combo.blockSignals(False)
        if chosen:
            self._fit_knobs(chosen[1])
        self._mode_changed()

    def _fit_knobs(self, config: dict) -> None:
        """Class names, the latent size and the family's default temperature from the config."""
        self.class_combo.clear()
        self.class_combo.addItem("Drawn per picture from its seed", None)
        for index, name in enumerate(config.get("classes") or []):
            self.class_combo.addItem(name, index)
        if config.get("latent", "vector") == "vector" and config.get("latent_dim"):
            self.dimension_spin.setMaximum(int(config["latent_dim"]) - 1)
        else:
            self.dimension_spin.setMaximum(100_000)  # spatial latents: the engine checks
        self.temperature_spin.setValue(0.8 if config["family"] == "nvae" else 1.0)

    def _mode_changed(self) -> None:
        chosen = self.current_model()
        family = chosen[1]["family"] if chosen else ""
        config = chosen[1] if chosen else {}
        knobs = set(MODE_KNOBS.get(self.mode_combo.currentData(), ()))
        if family != "stylegan":
            knobs -= {"truncation", "mix_layer"}
        if family != "dcgan" or not config.get("classes"):
            knobs.discard("class")
        if family not in ("vae", "beta-vae", "nvae"):
            knobs.discard("temperature")
        for key, (label, field) in self._rows.items():
            label.setVisible(key in knobs)
            field.setVisible(key in knobs)
        if "class" in knobs and self.mode_combo.currentData() == "interpolate_seeds":
            # a class drawn per picture would jump between classes along the walk
            if self.class_combo.currentData() is None:
                self.class_combo.setCurrentIndex(1)

    # -- actions --------------------------------------------------------------------------------
    def build_request(self):
        """The request for the chosen model and mode; raises EaselError with a message."""
        from engine.api import GenerationRequest

        chosen = self.current_model()
        if chosen is None:
            raise InputError("Choose a model to explore (Browse… to a native GAN or VAE folder).")
        reference, config = chosen
        family, mode = config["family"], self.mode_combo.currentData()
        if mode not in FAMILY_MODES[family]:
            supported = ", ".join(MODES[m].lower() for m in FAMILY_MODES[family])
            raise InputError(
                f"A {FAMILY_NAMES[family]} model cannot '{MODES.get(mode, mode).lower()}'; "
                f"it can: {supported}."
            )
        extras, init_image = self._extras(family, mode, config)
        side = int(config.get("resolution") or 64)
        return GenerationRequest(
            model=reference,
            seed=self.seed_spin.value(),
            batch_size=self.count_spin.value(),
            width=max(8, side - side % 8),
            height=max(8, side - side % 8),
            init_image=init_image,
            extras=extras,
        )

    def _extras(self, family: str, mode: str, config: dict) -> tuple[dict, str | None]:
        extras: dict = {}
        init_image = None
        if mode in ("interpolate_seeds", "style_mix"):
            key = "interpolate_to_seed" if mode == "interpolate_seeds" else "mix_seed"
            extras[key] = self.to_seed_spin.value()
        if mode == "style_mix":
            extras["mix_layer"] = self.mix_layer_spin.value()
        if mode in ("interpolate_images", "traverse"):
            init_image = _picture_path(self.image_a_edit.text(), "first picture", required=False)
        if mode == "interpolate_images":
            extras["interpolate_to_image"] = _picture_path(
                self.image_b_edit.text(), "second picture", required=True
            )
        if mode == "traverse":
            extras["traverse_dim"] = self.dimension_spin.value()
            extras["traverse_range"] = self.range_spin.value()
        if family == "stylegan":
            extras["truncation"] = self.truncation_spin.value()
        if family in ("vae", "beta-vae", "nvae"):
            extras["temperature"] = self.temperature_spin.value()
        if family == "dcgan" and self.class_combo.currentData() is not None:
            extras["class_label"] = self.class_combo.currentData()
        return extras, init_image

    def explore(self) -> None:
        if self.job_id is not None:
            return
        try:
            request = self.build_request()
        except EaselError as exc:
            self._show_status(str(exc), error=True)
            return
        self.columns = self.columns_spin.value()
        self._submit_job(request, request.batch_size)

    def cancel(self) -> None:
        self._cancel_job("Cancelling…")

    def _set_running(self, running: bool) -> None:
        self.explore_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        self.model_combo.setEnabled(not running)
        self.mode_combo.setEnabled(not running)

    # -- events (same pattern as TrainDialog: the sink queues, a GUI timer drains) --------------
    def _apply(self, event) -> None:
        if isinstance(event, Started):
            self._show_status("Loading the model…")
        elif isinstance(event, Progress):
            self.progress_bar.setRange(0, max(1, event.total))
            self.progress_bar.setValue(event.step)
            self._show_status(f"Drawing pictures: {event.step} of {event.total}")
        elif isinstance(event, Result):
            self._on_result(event)
        elif isinstance(event, Failed):
            self._finish("failed")
            self._show_status(event.message, error=True)
        elif isinstance(event, Cancelled):
            self._finish("cancelled")
            self._show_status("Cancelled.")

    def _on_result(self, event: Result) -> None:
        images = list(event.images or [])
        if images:
            self.grid_view.set_grid(make_grid(images, columns=min(self.columns, len(images))))
        seconds = event.info.get("generate_s")
        took = f" in {seconds:.1f} s" if isinstance(seconds, (int, float)) else ""
        self.progress_bar.setValue(self.progress_bar.maximum())
        self._finish("result")
        self._show_status(f"{len(images)} pictures{took}. Click one to open it on the canvas.")

    def _finish(self, outcome: str) -> None:
        self.job_id = None
        self._set_running(False)
        self.explore_finished.emit(outcome)

    def done(self, result: int) -> None:
        """Closing cancels a running job and stops listening until shown again."""
        if self.job_id is not None:
            self.engine.cancel(self.job_id)
            self._finish("cancelled")
        self._listen(False)
        super().done(result)

    def showEvent(self, event) -> None:  # noqa: N802 - Qt naming
        self._listen(True)
        super().showEvent(event)


def _picture_path(text: str, what: str, *, required: bool) -> str | None:
    """A readable picture's path, None when optional and empty, else InputError saying why."""
    from engine.images import open_user_image

    path = text.strip()
    if not path:
        if required:
            raise InputError(f"Choose the {what} (Browse… next to it).")
        return None
    if not Path(path).is_file():
        raise InputError(f"The {what} '{path}' does not exist. Choose another file.")
    open_user_image(path, what, mode=None)  # one clear message for any unreadable file
    return path


def _row(*widgets: QWidget) -> QWidget:
    row = QWidget()
    layout = QHBoxLayout(row)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.addWidget(widgets[0], 1)
    for widget in widgets[1:]:
        layout.addWidget(widget)
    return row


def _double(low: float, high: float, value: float, step: float) -> QDoubleSpinBox:
    spin = QDoubleSpinBox()
    spin.setRange(low, high)
    spin.setSingleStep(step)
    spin.setValue(value)
    return spin
