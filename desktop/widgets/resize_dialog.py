"""Resize the canvas: width and height (aspect kept unless unticked) and the model's size rules.

Stable Diffusion works in steps of 8 pixels (its latents are 1/8 of the picture), so sizes snap
to multiples of 8 unless the user unticks it; a native model makes pictures of one fixed size,
which the dialog names and offers in one click.
"""

from __future__ import annotations

from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from desktop.state.document import MAX_SIDE

STEP = 8


class ResizeDialog(QDialog):
    def __init__(self, width: int, height: int, fixed_size: int | None = None, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Resize canvas")
        self._source = (width, height)
        self._fixed = fixed_size
        self._syncing = False
        self.width_box = _side_box(width)
        self.height_box = _side_box(height)
        self.keep_aspect = QCheckBox("Keep the aspect ratio")
        self.keep_aspect.setChecked(True)
        self.snap = QCheckBox(f"Snap to multiples of {STEP} (what Stable Diffusion needs)")
        self.snap.setChecked(fixed_size is None)
        self.rule = QLabel()
        self.rule.setObjectName("note")
        self.rule.setWordWrap(True)
        self.rule.setMinimumWidth(360)
        form = QFormLayout()
        form.addRow("Width", self.width_box)
        form.addRow("Height", self.height_box)
        form.addRow("", self.keep_aspect)
        form.addRow("", self.snap)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel(f"Now {width} × {height} pixels."))
        layout.addLayout(form)
        layout.addWidget(self.rule)
        if fixed_size:
            self.use_fixed = QPushButton(f"Use {fixed_size} × {fixed_size}")
            self.use_fixed.clicked.connect(lambda: self.set_size(fixed_size, fixed_size))
            row = QHBoxLayout()
            row.addWidget(self.use_fixed)
            row.addStretch(1)
            layout.addLayout(row)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.width_box.valueChanged.connect(lambda v: self._side_changed("width", v))
        self.height_box.valueChanged.connect(lambda v: self._side_changed("height", v))
        self.snap.toggled.connect(lambda _on: self._explain())
        self._explain()

    def set_size(self, width: int, height: int) -> None:
        self._syncing = True
        self.width_box.setValue(width)
        self.height_box.setValue(height)
        self._syncing = False
        self._explain()

    def _side_changed(self, side: str, value: int) -> None:
        if self._syncing:
            return
        if self.keep_aspect.isChecked():
            src_w, src_h = self._source
            self._syncing = True
            if side == "width":
                self.height_box.setValue(max(1, round(value * src_h / src_w)))
            else:
                self.width_box.setValue(max(1, round(value * src_w / src_h)))
            self._syncing = False
        self._explain()

    def chosen_size(self) -> tuple[int, int]:
        width, height = self.width_box.value(), self.height_box.value()
        if self.snap.isChecked():
            width, height = (max(STEP, int(v / STEP + 0.5) * STEP) for v in (width, height))
        return width, height

    def _explain(self) -> None:
        width, height = self.chosen_size()
        lines = [f"The canvas becomes {width} × {height}."]
        if self._fixed:
            lines.append(
                f"The chosen model makes {self._fixed} × {self._fixed} pictures: edits of a "
                "canvas of another size are made at that size."
            )
        elif not self.snap.isChecked() and (width % STEP or height % STEP):
            lines.append(
                f"Stable Diffusion needs multiples of {STEP}: it will work on "
                f"{width // STEP * STEP} × {height // STEP * STEP} and drop the rest."
            )
        else:
            lines.append(f"Stable Diffusion models take any multiple of {STEP}.")
        self.rule.setText(" ".join(lines))


def _side_box(value: int) -> QSpinBox:
    box = QSpinBox()
    box.setRange(1, MAX_SIDE)
    box.setValue(value)
    box.setSuffix(" px")
    box.setMinimumWidth(110)
    return box


def resize_canvas(window: QWidget) -> ResizeDialog | None:
    """Open the dialog for the window's canvas and apply the size the user accepts."""
    document = window.document
    if not document.has_image():
        window.show_message("Open or generate an image before resizing the canvas.", "error")
        return None
    fixed = window.library.fixed_size(window.settings.get("model"))
    dialog = ResizeDialog(*document.size(), fixed_size=fixed, parent=window)
    dialog.accepted.connect(lambda: document.resize(*dialog.chosen_size()))
    dialog.setModal(True)
    dialog.show()
    return dialog
