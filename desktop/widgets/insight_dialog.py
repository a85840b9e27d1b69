"""What the image-understanding jobs found, offered to the prompt: a caption to use as (or add
to) the prompt, or the fragments CLIP ranked for an image, each with its score, to tick and add.

Non-modal: the user can keep working and come back to it. The dialog only reports choices
(`use_text`); the understanding controller edits the prompt (undoably).
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
)

THUMB = 112
REPLACE, ADD = "replace", "add"


class InsightDialog(QDialog):
    #: (text, how): how is REPLACE (use as the prompt) or ADD (append to the prompt)
    use_text = Signal(str, str)

    def __init__(self, title: str, image: QImage | None, parent=None):
        super().__init__(parent)
        self.setWindowTitle(title)
        self.setMinimumWidth(460)
        self.layout_ = QVBoxLayout(self)
        self.layout_.setContentsMargins(14, 14, 14, 14)
        self.layout_.setSpacing(10)
        self.top = QHBoxLayout()
        self.top.setSpacing(12)
        self.thumb = QLabel()
        self.thumb.setFixedSize(THUMB, THUMB)
        self.thumb.setAlignment(Qt.AlignmentFlag.AlignCenter)
        if image is not None and not image.isNull():
            self.thumb.setPixmap(
                QPixmap.fromImage(image).scaled(
                    THUMB,
                    THUMB,
                    Qt.AspectRatioMode.KeepAspectRatio,
                    Qt.TransformationMode.SmoothTransformation,
                )
            )
        self.top.addWidget(self.thumb, 0, Qt.AlignmentFlag.AlignTop)
        self.layout_.addLayout(self.top, 1)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.buttons.rejected.connect(self.close)
        self.text: QPlainTextEdit | None = None
        self.fragments: QListWidget | None = None

    # -- a caption ----------------------------------------------------------------------------
    def show_caption(self, caption: str) -> None:
        """An editable caption with "Use as prompt" and "Add to prompt"."""
        self.text = QPlainTextEdit(caption)
        self.text.setMinimumHeight(THUMB)
        self.text.setToolTip("Edit the caption before you use it if you like")
        self.top.addWidget(self.text, 1)
        use = self._button("Use as prompt", lambda: self._send(self.text.toPlainText(), REPLACE))
        use.setObjectName("primary")
        self._button("Add to prompt", lambda: self._send(self.text.toPlainText(), ADD))
        self.layout_.addWidget(self.buttons)

    # -- ranked fragments ---------------------------------------------------------------------
    def show_fragments(self, styles: list[dict], keywords: list[dict]) -> None:
        """Ranked styles then keywords, best first; the best style and every keyword ticked."""
        self.fragments = QListWidget()
        self.fragments.setMinimumHeight(220)
        self.fragments.setToolTip("Tick the fragments to add to the prompt")
        for index, style in enumerate(styles):
            label = f"{style.get('text', '')}   ({style.get('name', 'style')})"
            self._fragment(label, style, checked=index == 0)
        for keyword in keywords:
            label = f"{keyword.get('text', '')}   ({keyword.get('category', 'keyword')})"
            self._fragment(label, keyword, checked=True)
        intro = QLabel("CLIP ranked these words for the picture, closest first.")
        intro.setWordWrap(True)
        intro.setObjectName("note")
        intro.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.top.addWidget(intro, 1)
        self.layout_.insertWidget(1, self.fragments, 1)
        add = self._button("Add ticked to prompt", lambda: self._send(self.ticked(), ADD))
        add.setObjectName("primary")
        self.layout_.addWidget(self.buttons)

    def _fragment(self, label: str, data: dict, *, checked: bool) -> None:
        score = data.get("score")
        text = f"{label}   {score:.3f}" if isinstance(score, float) else label
        item = QListWidgetItem(text)
        item.setData(Qt.ItemDataRole.UserRole, str(data.get("text", "")))
        item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
        item.setCheckState(Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)
        self.fragments.addItem(item)

    def ticked(self) -> str:
        """The ticked fragments, comma-separated, in ranked order."""
        items = (self.fragments.item(i) for i in range(self.fragments.count()))
        chosen = [
            item.data(Qt.ItemDataRole.UserRole)
            for item in items
            if item.checkState() == Qt.CheckState.Checked
        ]
        return ", ".join(text for text in chosen if text)

    # -- shared -------------------------------------------------------------------------------
    def _button(self, text: str, slot) -> QPushButton:
        button = self.buttons.addButton(text, QDialogButtonBox.ButtonRole.ActionRole)
        button.clicked.connect(slot)
        return button

    def _send(self, text: str, how: str) -> None:
        if text.strip():
            self.use_text.emit(text.strip(), how)
            self.close()
