"""Choose how to upscale: the factor (x2, x4) and the upscaler (a model from the library, or
Lanczos). The job itself runs in the engine; its progress shows in the status bar."""

from __future__ import annotations

from PySide6.QtWidgets import QComboBox, QDialog, QDialogButtonBox, QFormLayout, QLabel

FACTORS = ((2.0, "× 2"), (4.0, "× 4"))
LANCZOS = ""


class UpscaleDialog(QDialog):
    def __init__(self, upscalers: list, size: tuple[int, int] | None = None, parent=None):
        """`upscalers`: library records with `.name` and `.path` (working ones only)."""
        super().__init__(parent)
        self.setWindowTitle("Upscale")
        self.model = QComboBox()
        for record in upscalers:
            self.model.addItem(record.name, str(record.path))
        self.model.addItem("Lanczos (no model: sharp resize)", LANCZOS)
        self.factor = QComboBox()
        for value, label in FACTORS:
            self.factor.addItem(label, value)
        self.result_size = QLabel()
        self.result_size.setObjectName("note")
        self._size = size
        form = QFormLayout(self)
        form.addRow("Upscaler", self.model)
        form.addRow("Factor", self.factor)
        form.addRow("", self.result_size)
        if not upscalers:
            hint = QLabel(
                "No upscaler models in the library yet: add ESRGAN / Real-ESRGAN / SwinIR files "
                "in the model browser for sharper results."
            )
            hint.setObjectName("note")
            hint.setWordWrap(True)
            hint.setMinimumWidth(340)
            form.addRow(hint)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Upscale")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        self.factor.currentIndexChanged.connect(self._show_size)
        self._show_size()

    def choice(self) -> tuple[str, float]:
        """(model path or "" for Lanczos, factor)."""
        return self.model.currentData(), float(self.factor.currentData())

    def _show_size(self) -> None:
        if self._size:
            factor = float(self.factor.currentData())
            width, height = (round(side * factor) for side in self._size)
            self.result_size.setText(f"{self._size[0]} × {self._size[1]} → {width} × {height}")
