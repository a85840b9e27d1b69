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
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
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
        self.fragments: QTreeWidget | None = None

    # -- a caption ----------------------------------------------------------------------------
    def show_caption(self, caption: str) -> None:
        """An editable caption with "Use as prompt" and "Add to prompt"."""
        self.text = QPlainTextEdit(caption)
        self.text.setFixedHeight(THUMB)
        self.text.setToolTip("Edit the caption before you use it if you like")
        self.top.addWidget(self.text, 1)
        use = self._button("Use as prompt", lambda: self._send(self.text.toPlainText(), REPLACE))
        use.setObjectName("primary")
        self._button("Add to prompt", lambda: self._send(self.text.toPlainText(), ADD))
        self.layout_.addWidget(self.buttons)

    # -- ranked fragments ---------------------------------------------------------------------
    def show_fragments(self, styles: list[dict], keywords: list[dict]) -> None:
        """Ranked styles then keywords, best first; the best style and every keyword ticked."""
        tree = self.fragments = QTreeWidget()
        tree.setColumnCount(3)
        tree.setHeaderLabels(["Fragment", "From", "Score"])
        tree.setRootIsDecorated(False)
        tree.setMinimumHeight(230)
        tree.setToolTip("Tick the fragments to add to the prompt")
        header = tree.header()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column in (1, 2):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        for index, style in enumerate(styles):
            self._fragment(style, f"{style.get('name', '')} style", checked=index == 0)
        for keyword in keywords:
            self._fragment(keyword, str(keyword.get("category", "keyword")), checked=True)
        intro = QLabel(
            "CLIP ranked these words for the picture, closest first. Tick the ones to add."
        )
        intro.setWordWrap(True)
        intro.setObjectName("note")
        intro.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.top.addWidget(intro, 1)
        self.layout_.insertWidget(1, tree, 1)
        add = self._button("Add ticked to prompt", lambda: self._send(self.ticked(), ADD))
        add.setObjectName("primary")
        self.layout_.addWidget(self.buttons)

    def _fragment(self, data: dict, source: str, *, checked: bool) -> None:
        score = data.get("score")
        item = QTreeWidgetItem(
            [str(data.get("text", "")), source, f"{score:.3f}" if isinstance(score, float) else ""]
        )
        item.setTextAlignment(2, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
        item.setCheckState(0, Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)
        self.fragments.addTopLevelItem(item)

    def ticked(self) -> str:
        """The ticked fragments, comma-separated, in ranked order."""
        tree = self.fragments
        items = (tree.topLevelItem(i) for i in range(tree.topLevelItemCount()))
        chosen = [item.text(0) for item in items if item.checkState(0) == Qt.CheckState.Checked]
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
