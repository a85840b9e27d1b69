"""What a dropped image's metadata holds, before it replaces the user's settings.

Shows the app that wrote it, each value read (as written, where Easel will run something else),
and what will not be carried over: values Easel cannot run, features it lacks, fields the file
does not hold. "Restore settings" applies only what was read; the rest stays as the user set it.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QFrame,
    QLabel,
    QScrollArea,
    QStyle,
    QVBoxLayout,
    QWidget,
)

#: prompts longer than this are shown cut (the full text is restored)
SHOWN_CHARS = 400


class ImportedSettingsDialog(QDialog):
    """Review dialog for `engine.metadata.ImportedSettings`; emits `restore_requested`."""

    restore_requested = Signal()

    def __init__(self, found, file_name: str, *, model_note: str = "", parent=None):
        super().__init__(parent)
        self.found = found
        self.setWindowTitle(f"Settings in {file_name}")
        self.setMinimumWidth(520)
        layout = QVBoxLayout(self)
        layout.setSpacing(10)
        title = QLabel(f"<b>{file_name}</b> was made with <b>{found.source}</b>.")
        title.setObjectName("importSource")
        title.setWordWrap(True)
        layout.addWidget(title)
        layout.addWidget(self._values_area())
        notes = [*found.notes, *([model_note] if model_note else [])]
        if notes:
            layout.addWidget(self._notes_box(notes))
        layout.addStretch(1)  # a taller window grows here, not between the lines
        buttons = QDialogButtonBox()
        restore = buttons.addButton("Restore settings", QDialogButtonBox.ButtonRole.AcceptRole)
        restore.setObjectName("restoreSettings")
        buttons.addButton(QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self._restore)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.adjustSize()

    def _values_area(self) -> QScrollArea:
        form_widget = QWidget()
        form = QFormLayout(form_widget)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignTop)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        rows = self.found.shown_values()
        for label, value in rows:
            shown = value if len(value) <= SHOWN_CHARS else value[:SHOWN_CHARS] + "…"
            field = QLabel(shown or "(empty)")
            field.setWordWrap(True)
            field.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            if label.lower().replace(" ", "_") in self.found.original:
                field.setToolTip("As written in the file; see below for what Easel will use.")
            form.addRow(f"{label}:", field)
        if not rows:
            form.addRow(QLabel("The file names an app but holds no settings Easel uses."))
        area = QScrollArea()
        area.setWidgetResizable(True)
        area.setFrameShape(QFrame.Shape.NoFrame)
        area.setWidget(form_widget)
        # as tall as the values (no gap above the notes), scrolling past 420 px
        height = min(420, form_widget.sizeHint().height() + 4)
        area.setMinimumHeight(height)
        area.setMaximumHeight(height if height < 420 else 16777215)
        return area

    def _notes_box(self, notes: list[str]) -> QFrame:
        box = QFrame()
        box.setObjectName("importNotes")
        box.setFrameShape(QFrame.Shape.StyledPanel)
        inner = QVBoxLayout(box)
        header = QLabel("<b>Not carried over, or different in Easel</b>")
        inner.addWidget(header)
        icon = self.style().standardIcon(QStyle.StandardPixmap.SP_MessageBoxWarning)
        for note in notes:
            row = QWidget()
            line = QFormLayout(row)
            line.setContentsMargins(0, 0, 0, 0)
            mark = QLabel()
            mark.setPixmap(icon.pixmap(14, 14))
            text = QLabel(note)
            text.setWordWrap(True)
            line.addRow(mark, text)
            inner.addWidget(row)
        return box

    def _restore(self) -> None:
        self.restore_requested.emit()
        self.accept()
