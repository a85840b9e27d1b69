"""The Train dialog: pick pictures, a family and settings, train, and watch it learn.

It submits one `TrainingRequest` to the engine it is given and shows the run live: a progress
bar with loss, images/s and time left, a loss curve, and the latest sample grid, whose pictures
open on the canvas when clicked (`open_image(PIL.Image)`).

Events arrive on the engine's worker thread. The sink only puts them on a Python queue; a timer
on the GUI thread drains it, so no Qt object is touched from the worker (PySide6 6.12 aborts
when a Python thread emits signals or builds QImages, see desktop/bridge.py). `engine_like`
needs `submit`, `cancel`, `subscribe` and `unsubscribe`, like `engine.worker.Engine`.
"""

from __future__ import annotations

import math
from typing import Any

from PySide6.QtCore import QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QPainter, QPainterPath, QPen, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QCompleter,
    QDialog,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from desktop.images import pil_to_qimage
from desktop.widgets.job_inbox import JobInbox, job_buttons
from engine.errors import EaselError
from engine.events import Cancelled, Failed, Preview, Progress, Result, Started
from engine.families.grid import grid_cell

FAMILIES = {
    "dcgan": "DCGAN (GAN; class subfolders make it conditional)",
    "stylegan": "StyleGAN-style GAN (up to 128 px)",
    "cyclegan": "CycleGAN (translate folder A <-> folder B)",
    "vae": "VAE (variational autoencoder)",
    "beta-vae": "beta-VAE (disentangled latents)",
    "nvae": "NVAE-style hierarchical VAE",
    "ddpm": "DDPM / DDIM diffusion",
    "ldm": "Latent diffusion (needs a trained VAE)",
    "dalle": "DALL-E-style: image tokens + transformer (captions from .txt or file names)",
}
RESOLUTIONS = (16, 32, 64, 128, 256)
POLL_MS = 16


class LossCurve(QWidget):
    """The loss per step as a line (bucket-averaged to the widget's width)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.values: list[float] = []
        self.setMinimumSize(260, 140)

    def clear(self) -> None:
        self.values = []
        self.update()

    def add(self, value: float) -> None:
        if math.isfinite(value):
            self.values.append(value)
            self.update()

    def points(self, width: int) -> list[float]:
        """At most `width` points: the mean of each bucket of consecutive steps."""
        if len(self.values) <= width:
            return list(self.values)
        size = len(self.values) / width
        buckets = [self.values[int(i * size) : max(int((i + 1) * size), int(i * size) + 1)]
                   for i in range(width)]  # fmt: skip
        return [sum(b) / len(b) for b in buckets]

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt naming
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        area = QRectF(self.rect()).adjusted(8, 8, -8, -22)
        painter.fillRect(self.rect(), self.palette().base())
        painter.setPen(QPen(self.palette().mid().color(), 1))
        painter.drawRect(area)
        values = self.points(max(2, int(area.width())))
        if len(values) >= 2:
            low, high = min(values), max(values)
            span = (high - low) or 1.0
            path = QPainterPath()
            for i, value in enumerate(values):
                x = area.left() + area.width() * i / (len(values) - 1)
                y = area.bottom() - area.height() * (value - low) / span
                path.moveTo(x, y) if i == 0 else path.lineTo(x, y)
            painter.setPen(QPen(QColor(40, 120, 220), 1.6))
            painter.drawPath(path)
        painter.setPen(self.palette().text().color())
        label = f"loss {self.values[-1]:.4f}  ({len(self.values)} steps)" if self.values else "loss"
        painter.drawText(QPointF(area.left(), self.height() - 6), label)
        painter.end()


class SampleGrid(QLabel):
    """Shows a sample grid, scaled up crisply; a click on one picture emits it."""

    picture_clicked = Signal(object)  # PIL.Image

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.grid = None
        self.scale = 1
        self.setMinimumSize(260, 260)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setText("Sample pictures appear here while training.")
        self.setCursor(Qt.CursorShape.PointingHandCursor)

    def set_grid(self, image) -> None:
        self.grid = image
        # whole-number nearest-neighbour scaling keeps tiny pictures sharp and clicks exact
        self.scale = max(1, min(8, 256 // max(1, max(image.size))))
        pixmap = QPixmap.fromImage(pil_to_qimage(image))
        size = pixmap.size() * self.scale
        self.setPixmap(pixmap.scaled(size, Qt.AspectRatioMode.KeepAspectRatio,
                                     Qt.TransformationMode.FastTransformation))  # fmt: skip

    def cell_at(self, x: float, y: float):
        """The picture under widget position (x, y), or None."""
        if self.grid is None or self.pixmap() is None:
            return None
        pixmap = self.pixmap()
        left = (self.width() - pixmap.width()) / 2
        top = (self.height() - pixmap.height()) / 2
        gx, gy = int((x - left) // self.scale), int((y - top) // self.scale)
        if not (0 <= gx < self.grid.width and 0 <= gy < self.grid.height):
            return None
        return grid_cell(self.grid, gx, gy) or self.grid

    def mousePressEvent(self, event) -> None:  # noqa: N802 - Qt naming
        picture = self.cell_at(event.position().x(), event.position().y())
        if picture is not None:
            self.picture_clicked.emit(picture)
        super().mousePressEvent(event)


class TrainDialog(JobInbox, QDialog):
    """Train a native model on a folder of pictures, with live progress, curve and samples."""

    open_image = Signal(object)  # PIL.Image: the user clicked a sample picture
    training_finished = Signal(str, dict)  # "result" / "failed" / "cancelled", job info

    def __init__(self, engine_like: Any, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Train a model")
        self.engine = engine_like
        self.job_id: int | None = None
        self._build()
        self._init_inbox()
        self._suggested_out = ""
        self._rendering = None  # the emoji render's step iterator while it runs
        self._render_timer = QTimer(self)
        self._render_timer.setInterval(0)
        self._render_timer.timeout.connect(self._render_slice)
        self._pending_request = None
        self._listen(True)
        self.samples.picture_clicked.connect(self.open_image)
        self._update_family()

    # -- layout ---------------------------------------------------------------------------------
    def _build(self) -> None:
        self.data_edit, data_row = self._folder_row("Folder of pictures (or builtin:emoji)")
        # the built-in set is one word away (it is rendered on first use, see start())
        self.data_edit.setCompleter(QCompleter(["builtin:emoji"], self.data_edit))
        self.data_b_edit, data_b_row = self._folder_row("Second folder (domain B)")
        self.out_edit, out_row = self._folder_row("Folder for the trained model")
        self.family_combo = QComboBox()
        for name, label in FAMILIES.items():
            self.family_combo.addItem(label, name)
        self.family_combo.currentIndexChanged.connect(self._update_family)
        self.resolution_combo = QComboBox()
        for value in RESOLUTIONS:
            self.resolution_combo.addItem(f"{value} x {value}", value)
        self.resolution_combo.setCurrentIndex(RESOLUTIONS.index(64))
        self.batch_spin = _spin(1, 1024, 16)
        self.steps_spin = _spin(1, 10_000_000, 2000)
        self.sample_spin = _spin(1, 1_000_000, 200)
        self.seed_spin = _spin(0, 2**31 - 1, 0)
        self.lr_spin = QDoubleSpinBox()
        self.lr_spin.setDecimals(6)
        self.lr_spin.setRange(0.0, 1.0)
        self.lr_spin.setSingleStep(1e-4)
        self.lr_spin.setSpecialValueText("family default")
        self.flip_check = QCheckBox("Random horizontal flips")
        self.flip_check.setChecked(True)
        self.resume_check = QCheckBox("Resume the run saved in the model folder")
        self.settings_edit = QLineEdit()
        self.settings_edit.setPlaceholderText("advanced: key=value, e.g. beta=8 latent_dim=32")

        form = QFormLayout()
        form.addRow("Pictures", data_row)
        form.addRow("Second folder", data_b_row)
        form.addRow("Save model in", out_row)
        form.addRow("Family", self.family_combo)
        form.addRow("Resolution", self.resolution_combo)
        form.addRow("Batch size", self.batch_spin)
        form.addRow("Steps", self.steps_spin)
        form.addRow("Samples every", self.sample_spin)
        form.addRow("Learning rate", self.lr_spin)
        form.addRow("Seed", self.seed_spin)
        form.addRow("", self.flip_check)
        form.addRow("", self.resume_check)
        form.addRow("Settings", self.settings_edit)
        self._data_b_label = form.labelForField(data_b_row)

        self.start_button, self.cancel_button, buttons = job_buttons(self, "Start training", "Stop")
        self.start_button.clicked.connect(self.start)

        self.progress_bar = QProgressBar()
        self.status_label = QLabel("Choose a folder of pictures and where to save the model.")
        self.status_label.setWordWrap(True)
        self.curve = LossCurve()
        self.samples = SampleGrid()
        live = QVBoxLayout()
        live.addWidget(self.progress_bar)
        live.addWidget(self.status_label)
        live.addWidget(self.curve, 1)
        live.addWidget(self.samples, 2)

        left = QVBoxLayout()
        left.addLayout(form)
        left.addStretch(1)
        left.addLayout(buttons)
        columns = QHBoxLayout(self)
        columns.addLayout(left, 1)
        columns.addLayout(live, 1)
        self.resize(860, 560)

    def _folder_row(self, placeholder: str) -> tuple[QLineEdit, QWidget]:
        edit = QLineEdit()
        edit.setPlaceholderText(placeholder)
        browse = QPushButton("Browse…")
        browse.clicked.connect(lambda: self._browse(edit))
        row = QWidget()
        layout = QHBoxLayout(row)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(edit, 1)
        layout.addWidget(browse)
        return edit, row

    def _browse(self, edit: QLineEdit) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose a folder", edit.text())
        if folder:
            edit.setText(folder)

    def _update_family(self) -> None:
        self._suggest_out_dir()
        two_domains = self.family_combo.currentData() == "cyclegan"
        self.data_b_edit.parentWidget().setVisible(two_domains)
        if self._data_b_label is not None:
            self._data_b_label.setVisible(two_domains)

    def _suggest_out_dir(self) -> None:
        """A fresh folder in the user's models folder (so the library lists the result), kept
        in step with the family until the user types their own."""
        current = self.out_edit.text().strip()
        if current and current != self._suggested_out:
            return
        from engine.paths import models_dir

        base = models_dir() / f"my-{self.family_combo.currentData()}"
        candidate, number = base, 2
        while candidate.exists():
            candidate, number = base.with_name(f"{base.name}-{number}"), number + 1
        self._suggested_out = str(candidate)
        self.out_edit.setText(self._suggested_out)

    # -- actions --------------------------------------------------------------------------------
    def build_request(self):
        """The request from the form; raises EaselError with a message for the user."""
        from engine.api import TrainingRequest
        from engine.cli.train import parse_settings

        family = self.family_combo.currentData()
        return TrainingRequest(
            family=family,
            data_dir=self.data_edit.text().strip(),
            data_dir_b=(self.data_b_edit.text().strip() or None) if family == "cyclegan" else None,
            out_dir=self.out_edit.text().strip(),
            steps=self.steps_spin.value(),
            resolution=self.resolution_combo.currentData(),
            batch_size=self.batch_spin.value(),
            learning_rate=self.lr_spin.value(),
            seed=self.seed_spin.value(),
            resume=self.resume_check.isChecked(),
            sample_every=self.sample_spin.value(),
            flip=self.flip_check.isChecked(),
            extras=parse_settings(self.settings_edit.text().split()),
        )

    def start(self) -> None:
        if self.job_id is not None or self._rendering is not None:
            return
        try:
            request = self.build_request()
        except EaselError as exc:
            self._show_status(str(exc), error=True)
            return
        self.curve.clear()
        from desktop.emoji_render import builtin_resolution

        if builtin_resolution(request.data_dir, request.resolution) is not None:
            self._render_then_submit(request)
            return
        self._submit_job(request, request.steps)

    # -- the built-in emoji set is rendered once, on first use, before its first run ------------
    def _render_then_submit(self, request) -> None:
        from desktop.emoji_render import render_steps

        self._pending_request = request
        self._rendering = render_steps(request.resolution)
        self._set_running(True)
        self._show_status("Rendering the built-in emoji set (once)…")
        self._render_timer.start()

    def _render_slice(self) -> None:
        """One slice of emoji per timer tick, so the window stays responsive."""
        try:
            done, total = next(self._rendering)
        except StopIteration:
            self._stop_rendering()
            request, self._pending_request = self._pending_request, None
            self._submit_job(request, request.steps)
            return
        except EaselError as exc:
            self._stop_rendering()
            self._set_running(False)
            self._show_status(str(exc), error=True)
            return
        self.progress_bar.setRange(0, total)
        self.progress_bar.setValue(done)
        self._show_status(f"Rendering the built-in emoji set (once): {done} of {total}…")

    def _stop_rendering(self) -> None:
        self._render_timer.stop()
        if self._rendering is not None:
            self._rendering.close()  # nothing is written for a stopped render
        self._rendering = None

    @property
    def rendering(self) -> bool:
        return self._rendering is not None

    def cancel(self) -> None:
        if self._rendering is not None:
            self._stop_rendering()
            self._pending_request = None
            self._set_running(False)
            self._show_status("Stopped before training started.")
            return
        self._cancel_job("Stopping: saving a checkpoint…")

    def _set_running(self, running: bool) -> None:
        self.start_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        for widget in (
            self.family_combo,
            self.resolution_combo,
            self.batch_spin,
            self.steps_spin,
            self.data_edit,
            self.data_b_edit,
            self.out_edit,
            self.resume_check,
        ):
            widget.setEnabled(not running)  # fmt: skip

    # -- events ---------------------------------------------------------------------------------
    def _apply(self, event) -> None:
        if isinstance(event, Started):
            self._show_status("Loading pictures…")
        elif isinstance(event, Progress):
            self._on_progress(event)
        elif isinstance(event, Preview) and event.image is not None:
            self.samples.set_grid(event.image)
        elif isinstance(event, Result):
            self._on_result(event)
        elif isinstance(event, Failed):
            self._finish("failed", {})
            self._show_status(event.message, error=True)
        elif isinstance(event, Cancelled):
            self._finish("cancelled", {})
            self._show_status("Stopped. A checkpoint was saved: tick Resume to continue later.")

    def _on_progress(self, event: Progress) -> None:
        info = event.info
        self.progress_bar.setRange(0, event.total)
        self.progress_bar.setValue(event.step)
        if "loss" in info:
            self.curve.add(float(info["loss"]))
        from engine.cli.train import format_progress

        self._show_status(format_progress(event.step, event.total, info))

    def _on_result(self, event: Result) -> None:
        if event.images:
            self.samples.set_grid(event.images[0])
        info = dict(event.info)
        skipped = len(info.get("skipped", []))
        note = f" {skipped} unreadable file(s) were skipped." if skipped else ""
        self._finish("result", info)
        self._show_status(
            f"Done: {info.get('steps')} steps, {info.get('images_per_s', 0):.1f} images/s. "
            f"The model is saved in {info.get('out_dir')}.{note}"
        )

    def _finish(self, outcome: str, info: dict) -> None:
        self.job_id = None
        self._set_running(False)
        self.training_finished.emit(outcome, info)

    def done(self, result: int) -> None:
        """Closing (button, Esc or the window's X) stops a run, which saves a checkpoint, and
        stops listening to the engine until the dialog is shown again."""
        if self._rendering is not None:
            self.cancel()
        if self.job_id is not None:
            self.engine.cancel(self.job_id)
            self._finish("cancelled", {})
        self._listen(False)
        super().done(result)

    def showEvent(self, event) -> None:  # noqa: N802 - Qt naming
        self._listen(True)
        super().showEvent(event)


def _spin(low: int, high: int, value: int) -> QSpinBox:
    spin = QSpinBox()
    spin.setRange(low, high)
    spin.setValue(value)
    return spin
