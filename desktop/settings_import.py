"""Settings that come from a picture: "reuse settings" on a gallery item, and a dropped PNG
that carries settings from Easel or another app (A1111, ComfyUI, Fooocus, InvokeAI). The
window offers them in a toast, shows what differs in a review dialog, and restores only what
the file holds; the model is matched against the user's library by name or hash."""

from __future__ import annotations

from PySide6.QtCore import Qt

from desktop.widgets.toast import ERROR
from engine.history import HistoryEntry


class SettingsImport:
    def __init__(self, window):
        self._window = window

    def reuse_entry(self, entry: HistoryEntry) -> None:
        window = self._window
        request = entry.generation_request()
        if request is None:
            window.show_message("This image has no settings Easel can read.", ERROR)
            return
        window.settings.apply_request(request)
        window.show_message("Settings restored from the gallery image.")
        window.settings_restored.emit(request, "Easel")

    def offer(self, found, name: str) -> None:
        """A dropped image carries settings (`ImportedSettings`): say from which app, offer
        to review them."""
        toast = self._window.toast
        count = len(found.notes)
        if found.source == "Easel" and not count:  # Easel's own picture: nothing to review
            toast.show_message(
                f"{name} carries the settings that made it.",
                action="Restore settings",
                callback=lambda: self.restore(found),
            )
            return
        differ = f" ({count} note{'s' * (count > 1)} on what differs in Easel)" if count else ""
        toast.show_message(
            f"{name} carries settings from {found.source}{differ}.",
            action="Review settings…",
            callback=lambda: self.review(found, name),
            seconds=10.0,
        )

    def review(self, found, name: str):
        from desktop.widgets.imported_settings import ImportedSettingsDialog

        model = self._library_model(found)
        note = ""
        if found.request.model and model is None:
            note = f"The model '{found.request.model}' is not in your library: yours stays."
        dialog = ImportedSettingsDialog(found, name, model_note=note, parent=self._window)
        dialog.restore_requested.connect(lambda: self.restore(found))
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()
        return dialog

    def restore(self, found) -> None:
        """Apply what the file holds; what it does not hold stays as the user set it."""
        window = self._window
        model = self._library_model(found)
        request = found.request.replace(model=model.reference) if model else found.request
        window.settings.apply_request(request, include_model=model is not None, only=found.found)
        note = "" if model or not request.model else f" '{request.model}' is not in your library."
        window.show_message(f"Settings from {found.source} restored.{note}")
        window.settings_restored.emit(found.request, found.source)

    def _library_model(self, found):
        return self._window.library.find_imported(
            found.request.model, str(found.request.extras.get("model_hash", ""))
        )
