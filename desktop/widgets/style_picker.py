"""The style picker: a compact button under the prompt that opens the style presets by category.

Each style's preview text is its tooltip, so the user sees what a style looks like before
choosing it. The presets come from engine.prompting.styles (plain data, no torch: safe on the
GUI thread); the choice is a name in GenerationSettings, applied when the request is built.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction, QActionGroup
from PySide6.QtWidgets import QMenu, QSizePolicy, QToolButton

from engine.errors import EaselError
from engine.prompting.styles import Style, load_styles, style_categories

NO_STYLE = "No style"


def style_tooltip(style: Style) -> str:
    """What the style looks like, then what it adds to the prompt."""
    adds = ", ".join(style.fragments)
    text = f"<b>{style.name}</b><br>{style.preview}" if style.preview else f"<b>{style.name}</b>"
    return f"{text}<br><i>Adds: {adds}</i>" if adds else text


class StylePicker(QToolButton):
    #: a style's name, or "" for no style
    style_chosen = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setMinimumWidth(120)
        self.current = ""
        self.problem = ""  # why the styles could not be read ("" when fine)
        self._actions: dict[str, QAction] = {}
        self._styles: dict[str, Style] = {}
        self.setMenu(self._build_menu())
        self.set_style("")

    def _build_menu(self) -> QMenu:
        menu = QMenu(self)
        menu.setToolTipsVisible(True)
        group = QActionGroup(menu)
        none = menu.addAction(NO_STYLE)
        none.setToolTip("Use the prompt exactly as typed")
        self._add(none, "", group)
        menu.addSeparator()
        try:
            styles, categories = load_styles(), style_categories()
        except EaselError as exc:  # a damaged user styles.json: say so in the menu, no crash
            self.problem = str(exc)
            broken = menu.addAction("Styles unavailable")
            broken.setEnabled(False)
            broken.setToolTip(self.problem)
            return menu
        for category in categories:
            sub = menu.addMenu(category)
            sub.setToolTipsVisible(True)
            for style in (s for s in styles if s.category == category):
                action = sub.addAction(style.name)
                action.setToolTip(style_tooltip(style))
                self._add(action, style.name, group)
                self._styles[style.name] = style
        return menu

    def _add(self, action: QAction, name: str, group: QActionGroup) -> None:
        action.setCheckable(True)
        group.addAction(action)
        self._actions[name] = action
        action.triggered.connect(lambda _=False, n=name: self._chosen(n))

    def _chosen(self, name: str) -> None:
        self.set_style(name)
        self.style_chosen.emit(name)

    def names(self) -> list[str]:
        return list(self._styles)

    def set_style(self, name: str) -> None:
        """Show `name` as the current style (no signal). Unknown names show as they are, marked,
        so a style that disappeared from styles.json is visible rather than silently dropped."""
        self.current = name
        action = self._actions.get(name)
        if action is not None:
            action.setChecked(True)
        style = self._styles.get(name)
        if not name:
            self._set_label("Style: none", "Choose a style preset to apply on top of the prompt")
        elif style is None:
            self._set_label(f"Style: {name} (missing)", f"The style '{name}' is not installed.")
        else:
            self._set_label(f"Style: {name}", style_tooltip(style))

    def _set_label(self, text: str, tooltip: str) -> None:
        self._full_text = text
        self.setToolTip(tooltip)
        self._elide()

    def _elide(self) -> None:
        room = max(40, self.width() - 28)  # the menu arrow and padding
        metrics = self.fontMetrics()
        self.setText(metrics.elidedText(self._full_text, Qt.TextElideMode.ElideRight, room))

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self._elide()
