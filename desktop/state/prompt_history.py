"""Recent prompts, newest first, kept in the preferences file between sessions.

The prompt box recalls them with Ctrl+Up / Ctrl+Down (one key away, like a shell's history) and
the Recent menu beside it lists them. What is stored is what the user typed (a wildcard
template, not its expansion), once per distinct text.
"""

from __future__ import annotations

import json

from PySide6.QtCore import QObject, Signal

from desktop.state.preferences import Preferences

KEY = "prompt/recent"
LIMIT = 50


class PromptHistory(QObject):
    changed = Signal()

    def __init__(self, preferences: Preferences, parent: QObject | None = None):
        super().__init__(parent)
        self.preferences = preferences
        self._items = _read(preferences.value(KEY, "[]"))

    def items(self) -> list[str]:
        return list(self._items)

    def add(self, prompt: str) -> None:
        prompt = prompt.strip()
        if not prompt:
            return
        self._items = [prompt] + [p for p in self._items if p != prompt][: LIMIT - 1]
        self.preferences.set_value(KEY, json.dumps(self._items))
        self.changed.emit()


def _read(raw) -> list[str]:
    try:
        data = json.loads(raw or "[]")
    except (TypeError, json.JSONDecodeError):
        return []  # a damaged entry: start a fresh history, nothing else is affected
    return (
        [p for p in data if isinstance(p, str) and p.strip()][:LIMIT]
        if isinstance(data, list)
        else []
    )
