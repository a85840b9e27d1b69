"""Settings: where and how the engine runs, where models and results live.

Runtime options travel inside every request, so device, precision, threads and memory options
apply to the next job without a restart; model folders rescan the library at once.
"""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from desktop.state.models import ModelLibrary
from desktop.state.preferences import UNDERSTANDING_ROLES, Preferences
from engine.api import DeviceChoice, Offload, Precision, RuntimeOptions

DEVICE_LABELS = {
    DeviceChoice.AUTO: "Automatic (best available)",
    DeviceChoice.CUDA: "NVIDIA GPU (CUDA)",
    DeviceChoice.MPS: "Apple GPU (MPS)",
    DeviceChoice.CPU: "CPU",
}
PRECISION_LABELS = {
    Precision.AUTO: "Automatic",
    Precision.FP32: "fp32 (exact, slowest)",
    Precision.FP16: "fp16 (GPU)",
    Precision.BF16: "bf16 (fast on modern CPUs)",
}
OFFLOAD_LABELS = {
    Offload.AUTO: "Automatic (offload when a model does not fit)",
    Offload.NONE: "Keep models on the device",
    Offload.MODEL: "Offload whole models (less VRAM)",
    Offload.SEQUENTIAL: "Offload layer by layer (least VRAM, slowest)",
}


def _combo(labels: dict, current) -> QComboBox:
    combo = QComboBox()
    for value, label in labels.items():
        combo.addItem(label, value)
    combo.setCurrentIndex(max(0, combo.findData(current)))
    return combo


class SettingsDialog(QDialog):
    def __init__(
        self, preferences: Preferences, parent=None, *, library: ModelLibrary | None = None
    ):
        super().__init__(parent)
        self.library = library
        self.setWindowTitle("Settings")
        self.setMinimumWidth(560)
        self.preferences = preferences
        self.problems: list[str] = []
        runtime = preferences.runtime()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(16, 16, 16, 16)
        layout.setSpacing(12)
        layout.addWidget(self._engine_group(runtime))
        layout.addWidget(self._memory_group(runtime))
        layout.addWidget(self._folders_group())
        layout.addWidget(self._understanding_group())
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok
            | QDialogButtonBox.StandardButton.Cancel
            | QDialogButtonBox.StandardButton.Apply
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        buttons.button(QDialogButtonBox.StandardButton.Apply).clicked.connect(self.apply)
        layout.addWidget(buttons)

    def _engine_group(self, runtime: RuntimeOptions) -> QGroupBox:
        group = QGroupBox("Engine")
        form = QFormLayout(group)
        self.device = _combo(DEVICE_LABELS, runtime.device)
        self.precision = _combo(PRECISION_LABELS, runtime.precision)
        self.threads = QSpinBox()
        self.threads.setRange(0, max(64, os.cpu_count() or 1))
        self.threads.setSpecialValueText("All cores")
        self.threads.setValue(runtime.cpu_threads)
        form.addRow("Device", self.device)
        form.addRow("Precision", self.precision)
        form.addRow("CPU threads", self.threads)
        note = QLabel("Applies to the next job; no restart needed.")
        note.setObjectName("note")
        form.addRow("", note)
        return group

    def _memory_group(self, runtime: RuntimeOptions) -> QGroupBox:
        group = QGroupBox("Memory")
        form = QFormLayout(group)
        self.attention_slicing = QCheckBox("Attention slicing (less memory, a little slower)")
        self.attention_slicing.setChecked(runtime.attention_slicing)
        self.vae_tiling = QCheckBox("VAE tiling (large images)")
        self.vae_tiling.setChecked(runtime.vae_tiling)
        self.vae_slicing = QCheckBox("VAE slicing (large batches)")
        self.vae_slicing.setChecked(runtime.vae_slicing)
        self.offload = _combo(OFFLOAD_LABELS, runtime.offload)
        form.addRow(self.attention_slicing)
        form.addRow(self.vae_tiling)
        form.addRow(self.vae_slicing)
        form.addRow("Offload", self.offload)
        return group

    def _folders_group(self) -> QGroupBox:
        group = QGroupBox("Folders")
        form = QFormLayout(group)
        self.folders = QListWidget()
        folders = self.library.current_folders() if self.library else None
        self.folders.addItems(folders if folders is not None else self.preferences.model_folders())
        self.folders.setMaximumHeight(84)
        buttons = QWidget()
        row = QHBoxLayout(buttons)
        row.setContentsMargins(0, 0, 0, 0)
        add, remove = QPushButton("Add folder…"), QPushButton("Remove")
        add.clicked.connect(self._add_folder)
        remove.clicked.connect(lambda: self.folders.takeItem(self.folders.currentRow()))
        row.addWidget(add)
        row.addWidget(remove)
        row.addStretch(1)
        form.addRow("Model folders", self.folders)
        form.addRow("", buttons)
        self.output = QLineEdit(self.preferences.output_folder())
        self.output.setPlaceholderText("Only the gallery (no extra copy)")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._choose_output)
        out_row = QWidget()
        out_layout = QHBoxLayout(out_row)
        out_layout.setContentsMargins(0, 0, 0, 0)
        out_layout.addWidget(self.output, 1)
        out_layout.addWidget(browse)
        form.addRow("Output folder", out_row)
        return group

    def _understanding_group(self) -> QGroupBox:
        """Model folders for prompt expansion, image description and interrogation."""
        group = QGroupBox("Prompt and image understanding models")
        form = QFormLayout(group)
        self.understanding: dict[str, QLineEdit] = {}
        placeholders = {
            "language_model": "None: keyword retrieval with MiniLM",
            "caption_model": "Not set: choose a BLIP-style captioner",
            "clip_model": "Not set: choose a CLIP model folder",
        }
        for role, (label, what) in UNDERSTANDING_ROLES.items():
            edit = QLineEdit(self.preferences.understanding_folder(role))
            edit.setPlaceholderText(placeholders[role])
            edit.setToolTip(f"{label}: {what}")
            edit.setClearButtonEnabled(True)
            browse = QPushButton("Browse…")
            browse.clicked.connect(lambda _=False, r=role: self._choose_model_folder(r))
            row = QWidget()
            row_layout = QHBoxLayout(row)
            row_layout.setContentsMargins(0, 0, 0, 0)
            row_layout.addWidget(edit, 1)
            row_layout.addWidget(browse)
            form.addRow(label, row)
            self.understanding[role] = edit
        note = QLabel("Models are loaded from these folders only; nothing is downloaded.")
        note.setObjectName("note")
        note.setWordWrap(True)
        form.addRow("", note)
        return group

    def _choose_model_folder(self, role: str) -> None:
        label, what = UNDERSTANDING_ROLES[role]
        folder = QFileDialog.getExistingDirectory(self, f"{label}: choose {what}")
        if folder:
            self.understanding[role].setText(folder)

    def _apply_understanding(self) -> list[str]:
        """Save the understanding folders; a folder that does not exist is a problem to show."""
        problems = []
        for role, edit in self.understanding.items():
            folder = edit.text().strip()
            if folder and not Path(folder).expanduser().is_dir():
                label = UNDERSTANDING_ROLES[role][0]
                problems.append(f"{label}: the folder {folder} does not exist.")
            self.preferences.set_understanding_folder(role, folder)
        return problems

    def _add_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a model folder")
        if folder:
            self.folders.addItem(folder)

    def _choose_output(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Also save every result in")
        if folder:
            self.output.setText(folder)

    def runtime(self) -> RuntimeOptions:
        return RuntimeOptions(
            device=self.device.currentData(),
            precision=self.precision.currentData(),
            cpu_threads=self.threads.value(),
            attention_slicing=self.attention_slicing.isChecked(),
            vae_tiling=self.vae_tiling.isChecked(),
            vae_slicing=self.vae_slicing.isChecked(),
            offload=self.offload.currentData(),
        )

    def apply(self) -> None:
        folders = [self.folders.item(i).text() for i in range(self.folders.count())]
        understanding_problems = self._apply_understanding()
        self.preferences.apply(
            runtime=self.runtime(), folders=folders, output_folder=self.output.text().strip()
        )
        self.problems = understanding_problems
        if self.library is not None:
            self.problems += self.library.set_folders(folders)

    def accept(self) -> None:
        self.apply()
        super().accept()
