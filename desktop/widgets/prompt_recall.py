"""Recent prompts in the prompt box: Ctrl+Up / Ctrl+Down step through them, and a Recent
button lists them. Text the user was typing is kept: stepping back down past the newest
prompt brings it back, as a shell does."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMenu, QPlainTextEdit, QPushButton

from desktop.state.prompt_history import PromptHistory

MENU_ITEMS = 15
MENU_TEXT = 70  # characters of a prompt shown in the menu


class PromptRecall(QObject):
    def __init__(self, editor: QPlainTextEdit, history: PromptHistory, parent=None):
        super().__init__(parent or editor)
        self.editor = editor
        self.history = history
        self._position = -1  # -1: the user's own text; 0: the newest recent prompt
        self._draft = ""
        self.button = QPushButton("Recent")
        self.button.setToolTip("Recent prompts (Ctrl+Up and Ctrl+Down in the prompt box)")
        self.button.setMinimumWidth(84)  # room for the text and the menu arrow
        self.button.setMenu(QMenu(self.button))
        self.button.menu().aboutToShow.connect(self._fill_menu)
        editor.installEventFilter(self)
        history.changed.connect(self._reset)
        self._reset()

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 - Qt naming
        if watched is self.editor and event.type() == QEvent.Type.KeyPress:
            if event.modifiers() & Qt.KeyboardModifier.ControlModifier:
                if event.key() == Qt.Key.Key_Up:
                    self.step(1)
                    return True
                if event.key() == Qt.Key.Key_Down:
                    self.step(-1)
                    return True
        return False

    def step(self, direction: int) -> None:
        """1 = an older prompt, -1 = a newer one (past the newest: the draft again)."""
        items = self.history.items()
        new = max(-1, min(len(items) - 1, self._position + direction))
        if new == self._position:
            return
        if self._position == -1:
            self._draft = self.editor.toPlainText()
        self._position = new
        self._show(self._draft if new == -1 else items[new])

    def _show(self, text: str) -> None:
        self.editor.setPlainText(text)
        cursor = self.editor.textCursor()
        cursor.movePosition(cursor.MoveOperation.End)
        self.editor.setTextCursor(cursor)

    def _reset(self) -> None:
        self._position = -1
        self.button.setEnabled(bool(self.history.items()))

    def _fill_menu(self) -> None:
        menu = self.button.menu()
        menu.clear()
        for prompt in self.history.items()[:MENU_ITEMS]:
            one_line = " ".join(prompt.split())
            text = one_line if len(one_line) <= MENU_TEXT else one_line[: MENU_TEXT - 1] + "…"
            action = QAction(text.replace("&", "&&"), menu)
            action.setToolTip(prompt)
            action.triggered.connect(lambda _=False, p=prompt: self._show(p))
            menu.addAction(action)


def install(panel, history: PromptHistory) -> PromptRecall:
    """Add recall to a PromptPanel: keys in its prompt box, the Recent button in its tools row."""
    recall = PromptRecall(panel.prompt, history, panel)
    panel.prompt_tools_row.insertWidget(1, recall.button)
    return recall
