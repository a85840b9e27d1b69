"""A seed field that holds any 64-bit seed exactly.

QSpinBox stops at 2**31 - 1 and QDoubleSpinBox keeps only 53 bits, so seeds from ComfyUI or
Fooocus (up to 2**64 - 1) would be changed on the way in; a validated line edit keeps every
digit. The interface is the part of a spin box the prompt panel uses."""

from __future__ import annotations

from PySide6.QtCore import QRegularExpression, Signal
from PySide6.QtGui import QRegularExpressionValidator
from PySide6.QtWidgets import QLineEdit

from engine.api import MAX_SEED


class SeedEdit(QLineEdit):
    """Digits only, 0 to MAX_SEED; `valueChanged(int)` when the user changes it."""

    valueChanged = Signal(object)  # an int past 2**31: a Python object, not a C++ int

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setValidator(QRegularExpressionValidator(QRegularExpression(r"[0-9]{0,20}"), self))
        self.setPlaceholderText("0")
        self.setToolTip(f"Any whole number from 0 to {MAX_SEED}")
        self._value = 0
        self.setText("0")
        self.textEdited.connect(self._edited)
        self.editingFinished.connect(lambda: self.setText(str(self._value)))

    def value(self) -> int:
        return self._value

    def setValue(self, value: int) -> None:  # noqa: N802 - the spin box name callers use
        """Show `value` (clamped into range); like a spin box, emits valueChanged on a change."""
        value = min(max(int(value), 0), MAX_SEED)
        if self.text() != str(value):
            self.setText(str(value))
        if value != self._value:
            self._value = value
            self.valueChanged.emit(value)

    def _edited(self, text: str) -> None:
        value = min(int(text), MAX_SEED) if text else 0
        if value != self._value:
            self._value = value
            self.valueChanged.emit(value)
