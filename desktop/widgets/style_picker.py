"""The style picker: a compact button under the prompt that opens the style presets by category,
with a search field on top (typing lists the matching styles flat, by name, category or look).

Each style's preview text is its tooltip, so the user sees what a style looks like before
choosing it. The presets come from engine.prompting.styles (plain data, no torch: safe on the
GUI thread); the choice is a name in GenerationSettings, applied when the request is built.
"""

from __future__ import annotations

from PySide6.QtCore import QTimer, Signal
from PySide6.QtGui import QAction, QActionGroup
from PySide6.QtWidgets import QComboBox, QLineEdit, QMenu, QSizePolicy, QWidgetAction

from engine.errors import EaselError
from engine.prompting.styles import Style, load_styles, style_categories

NO_STYLE = "No style"


def style_tooltip(style: Style) -> str:
    """What the style looks like, then what it adds to the prompt."""
    adds = ", ".join(style.fragments)
    text = f"<b>{style.name}</b><br>{style.preview}" if style.preview else f"<b>{style.name}</b>"
    return f"{text}<br><i>Adds: {adds}</i>" if adds else text


def matches(style: Style, text: str) -> bool:
    """Every word of `text` appears in the style's name, category, fragments or preview."""
    haystack = f"{style.name} {style.category} {style.positive} {style.preview}".lower()
    return all(word in haystack for word in text.lower().split())


class StylePicker(QComboBox):
    """Looks like the other combo boxes (one item: the current style); its popup is the
    categorised, searchable style menu."""

    #: a style's name, or "" for no style
    style_chosen = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("stylePicker")
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.setMinimumContentsLength(10)
        self.setMinimumWidth(120)
        self.current = ""
        self.problem = ""  # why the styles could not be read ("" when fine)
        self._actions: dict[str, QAction] = {}
        self._found: dict[str, QAction] = {}  # the flat search results, one per style
        self._category_actions: list[QAction] = []
        self._styles: dict[str, Style] = {}
        self._menu = self._build_menu()
        self.addItem("")
        self.set_style("")

    def menu(self) -> QMenu:
        return self._menu

    def showPopup(self) -> None:  # noqa: N802 - Qt override: the menu instead of the list
        self._menu.setMinimumWidth(self.width())
        self._menu.popup(self.mapToGlobal(self.rect().bottomLeft()))

    def hidePopup(self) -> None:  # noqa: N802 - Qt override
        self._menu.hide()

    def _build_menu(self) -> QMenu:
        menu = QMenu(self)
        menu.setToolTipsVisible(True)
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search styles…")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(self.filter)
        self.search.returnPressed.connect(self._choose_first_match)
        field = QWidgetAction(menu)
        field.setDefaultWidget(self.search)
        menu.addAction(field)
        # the field takes the typing as soon as the menu opens; it starts empty each time
        menu.aboutToShow.connect(self.search.clear)
        menu.aboutToShow.connect(lambda: QTimer.singleShot(0, self.search.setFocus))
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
            self._category_actions.append(sub.menuAction())
            for style in (s for s in styles if s.category == category):
                action = sub.addAction(style.name)
                action.setToolTip(style_tooltip(style))
                self._add(action, style.name, group)
                self._styles[style.name] = style
        for style in styles:
            found = menu.addAction(f"{style.name}  ·  {style.category}")
            found.setToolTip(style_tooltip(style))
            found.setVisible(False)
            found.triggered.connect(lambda _=False, n=style.name: self._chosen(n))
            self._found[style.name] = found
        self._no_match = menu.addAction("No style matches")
        self._no_match.setEnabled(False)
        self._no_match.setVisible(False)
        return menu

    def filter(self, text: str) -> list[str]:
        """Show the styles matching `text` as a flat list (categories when empty). Returns the
        names shown."""
        text = text.strip()
        shown = [name for name, style in self._styles.items() if text and matches(style, text)]
        # styles whose name matches come first (Enter picks the first)
        shown.sort(key=lambda name: not all(w in name.lower() for w in text.lower().split()))
        for action in self._category_actions:
            action.setVisible(not text)
        menu = self._menu if hasattr(self, "_menu") else None
        for name, action in self._found.items():
            action.setVisible(name in shown)
        if menu is not None and shown:  # list them in ranked order, above "No style matches"
            for name in shown:
                menu.removeAction(self._found[name])
                menu.insertAction(self._no_match, self._found[name])
        self._no_match.setVisible(bool(text) and not shown)
        return shown

    def _choose_first_match(self) -> None:
        """Enter in the search field picks the best (first) match."""
        shown = self.filter(self.search.text())
        if shown:
            self._chosen(shown[0])

    def _add(self, action: QAction, name: str, group: QActionGroup) -> None:
        action.setCheckable(True)
        group.addAction(action)
        self._actions[name] = action
        action.triggered.connect(lambda _=False, n=name: self._chosen(n))

    def _chosen(self, name: str) -> None:
        self._menu.hide()
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
        self.setItemText(0, text)
        self.setToolTip(tooltip)

    def text(self) -> str:
        return self.currentText()
