"""Prompt and image understanding in the app: expand the prompt, describe an image (caption),
interrogate an image (CLIP-ranked style and keyword fragments).

Every job goes through the engine bridge like a generation does, so it runs on the engine's
worker thread, shows in the status bar's progress and is cancelled by Esc / Cancel. The
generation controller already reports failures and cancellations of every bridge job; this
controller only handles its own results. Prompt edits made for the user (an expansion, a
caption) are single undoable edits of the prompt box (Ctrl+Z), and the toast offers Undo too.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject
from PySide6.QtGui import QImage, QTextCursor
from PySide6.QtWidgets import QPlainTextEdit

from desktop.controller import working_dir
from desktop.state.preferences import UNDERSTANDING_ROLES
from desktop.widgets.insight_dialog import REPLACE, InsightDialog
from desktop.widgets.toast import ERROR, INFO
from engine.api import CaptionRequest, ExpandPromptRequest, InterrogateRequest
from engine.errors import EaselError
from engine.history import HistoryEntry
from engine.prompting.styles import merge_fragments

EXPAND, CAPTION, INTERROGATE = "expand", "caption", "interrogate"
SETTINGS_GROUP = "Prompt and image understanding models"


def replace_text(edit: QPlainTextEdit, text: str) -> bool:
    """Replace all of `edit`'s text as one undoable step. False when nothing changed."""
    if edit.toPlainText() == text:
        return False
    cursor = edit.textCursor()
    cursor.beginEditBlock()
    cursor.select(QTextCursor.SelectionType.Document)
    cursor.insertText(text)
    cursor.endEditBlock()
    edit.setTextCursor(cursor)
    return True


def missing_model_message(role: str) -> str:
    label, what = UNDERSTANDING_ROLES[role]
    return (
        f"{label} needs {what}. Choose one in Edit ▸ Settings… ▸ {SETTINGS_GROUP} ▸ {label}. "
        "Easel never downloads models."
    )


def expansion_for(info: dict, submitted: str, chosen_style: str) -> tuple[str, str]:
    """(prompt, negative) to offer from an expansion result.

    The retrieval expansion brings its own closest style; when the user picked a style in the
    picker, that one wins (it is applied at generation), so only the detail keywords are added
    to what they typed and the retrieved style's words and negative are left out."""
    keywords = [str(k) for k in info.get("keywords", []) if str(k).strip()]
    if chosen_style and info.get("method") == "retrieval" and keywords:
        return merge_fragments(submitted, *keywords), ""
    return str(info.get("prompt", "")).strip(), str(info.get("negative_prompt", "") or "")


class Understanding(QObject):
    """Builds, submits and finishes the understanding jobs of one main window."""

    def __init__(self, window):
        super().__init__(window)
        self.window = window
        self.bridge = window.bridge
        self.preferences = window.preferences
        self.settings = window.settings
        self.panel = window.prompt_panel
        self._jobs: dict[int, tuple[str, QImage | None, list[Path]]] = {}
        self.expand_job: int | None = None
        self.expand_prompt = ""  # the prompt the running expansion started from
        self.dialogs: list[InsightDialog] = []
        self.bridge.result.connect(self.on_result)
        self.bridge.failed.connect(lambda job_id, *_: self._finish(job_id))
        self.bridge.cancelled.connect(self._finish)

    # -- expand ---------------------------------------------------------------------------------
    def expand(self) -> int | None:
        """Expand the prompt as typed (the style is applied later, at generation)."""
        if self.expand_job is not None:
            return None  # one at a time: the button says Stop meanwhile
        prompt = self.settings.get("prompt").strip()
        if not prompt:
            self._say("Type a few words in the prompt first; Expand grows them into a fuller one.")
            return None
        job_id = self._submit(
            EXPAND,
            lambda: ExpandPromptRequest(
                prompt=prompt,
                model=self.preferences.understanding_folder("language_model"),
                seed=self.settings.next_seed(),  # a fixed seed expands the same way each time
                runtime=self.preferences.runtime(),
            ),
        )
        if job_id is not None:
            self.expand_job = job_id
            self.expand_prompt = prompt
            self.panel.set_expanding(True)
        return job_id

    def cancel_expand(self) -> None:
        if self.expand_job is not None:
            self.bridge.cancel(self.expand_job)

    def _expanded(self, info: dict, submitted: str) -> None:
        prompt, negative = expansion_for(info, submitted, self.settings.get("style"))
        if not prompt:
            self._say("The expansion came back empty; try again or use another model.", ERROR)
            return
        if self.panel.prompt.toPlainText().strip() != submitted:
            # the user typed on while it ran: offer it rather than overwrite their edit
            self._say(
                "The prompt changed while it was being expanded.",
                action="Use expansion",
                callback=lambda: self._use_expansion(prompt, negative, info),
            )
            return
        self._use_expansion(prompt, negative, info)

    def _use_expansion(self, prompt: str, negative: str, info: dict) -> None:
        changed = [self.panel.prompt] if replace_text(self.panel.prompt, prompt) else []
        if negative:
            merged = merge_fragments(self.panel.negative.toPlainText(), negative)
            if replace_text(self.panel.negative, merged):
                changed.append(self.panel.negative)
        if not changed:
            self._say("The expansion matches the prompt already.")
            return
        style = info.get("style") if negative else None  # its style was used
        how = f" (closest style: {style})" if style else ""
        self._say(f"Prompt expanded{how}.", action="Undo", callback=lambda: _undo(changed))

    # -- describe and interrogate -------------------------------------------------------------
    def describe_canvas(self) -> int | None:
        return self._on_canvas(CAPTION)

    def interrogate_canvas(self) -> int | None:
        return self._on_canvas(INTERROGATE)

    def describe_entry(self, entry: HistoryEntry) -> int | None:
        return self._on_file(CAPTION, Path(entry.image_path), _thumbnail(entry), [])

    def interrogate_entry(self, entry: HistoryEntry) -> int | None:
        return self._on_file(INTERROGATE, Path(entry.image_path), _thumbnail(entry), [])

    def _on_canvas(self, kind: str) -> int | None:
        document = self.window.document
        if not self._folder_for(kind):
            return None
        if not document.has_image():
            tool = "Describe image" if kind == CAPTION else "Interrogate"
            self._say(
                f"{tool} needs a picture on the canvas: open, drop or paste one, or right-click "
                "an image in the gallery.",
                ERROR,
            )
            return None
        image = QImage(document.image)
        path = working_dir() / f"{uuid.uuid4().hex[:10]}-{kind}.png"
        if not image.save(str(path), "PNG", 90):
            self._say(f"Could not write the working image to {path}. Is the disk full?", ERROR)
            return None
        return self._on_file(kind, path, image, [path])

    def _on_file(self, kind: str, path: Path, image: QImage | None, files: list) -> int | None:
        folder = self._folder_for(kind)
        if not folder:
            return None
        request_type = CaptionRequest if kind == CAPTION else InterrogateRequest
        runtime = self.preferences.runtime()
        job_id = self._submit(
            kind, lambda: request_type(image=str(path), model=folder, runtime=runtime), image, files
        )
        if job_id is None:
            for file in files:
                file.unlink(missing_ok=True)
        return job_id

    def _folder_for(self, kind: str) -> str:
        """The model folder the tool needs, or "" after telling the user what to pick where."""
        role = "caption_model" if kind == CAPTION else "clip_model"
        folder = self.preferences.understanding_folder(role)
        if not folder:
            self.window.toast.show_message(
                missing_model_message(role),
                ERROR,
                action="Open settings",
                callback=self.window.show_settings,
            )
        return folder

    def _described(self, info: dict, image: QImage | None) -> None:
        caption = str(info.get("caption", "")).strip()
        if not caption:
            self._say("The model gave no caption for this image.", ERROR)
            return
        dialog = self._dialog("Describe image", image)
        dialog.show_caption(caption)
        dialog.show()

    def _interrogated(self, info: dict, image: QImage | None) -> None:
        styles, keywords = list(info.get("styles", [])), list(info.get("keywords", []))
        if not styles and not keywords:
            self._say("CLIP found no fragments for this image.", ERROR)
            return
        dialog = self._dialog("Interrogate image", image)
        dialog.show_fragments(styles, keywords)
        dialog.show()

    def _dialog(self, title: str, image: QImage | None) -> InsightDialog:
        dialog = InsightDialog(title, image, self.window)
        dialog.use_text.connect(self.use_in_prompt)
        dialog.finished.connect(lambda _=0, d=dialog: self._forget(d))
        self.dialogs.append(dialog)
        return dialog

    def _forget(self, dialog: InsightDialog) -> None:
        if dialog in self.dialogs:
            self.dialogs.remove(dialog)
        dialog.deleteLater()

    def use_in_prompt(self, text: str, how: str) -> None:
        """Put `text` into the prompt box (REPLACE) or after what is there (ADD), undoably."""
        edit = self.panel.prompt
        new = text if how == REPLACE else merge_fragments(edit.toPlainText(), text)
        if replace_text(edit, new):
            done = "The prompt now holds it" if how == REPLACE else "Added to the prompt"
            self._say(f"{done}.", action="Undo", callback=lambda: _undo([edit]))

    # -- jobs -------------------------------------------------------------------------------------
    def _submit(self, kind: str, build: Callable, image=None, files=None) -> int | None:
        try:
            job_id = self.bridge.submit(build())
        except (EaselError, RuntimeError) as exc:
            self._say(str(exc), ERROR)
            return None
        self._jobs[job_id] = (kind, image, list(files or []))
        self.window.job.queued(job_id)  # busy at once: progress bar, Cancel and Esc apply
        return job_id

    def on_result(self, job_id: int, entries: list, info: dict) -> None:
        if job_id not in self._jobs:
            return
        kind, image, _ = self._jobs[job_id]
        submitted = self.expand_prompt
        self._finish(job_id)
        if kind == EXPAND:
            self._expanded(info, submitted)
        elif kind == CAPTION:
            self._described(info, image)
        else:
            self._interrogated(info, image)

    def _finish(self, job_id: int) -> None:
        """Forget a job that ended (result, failure or cancel: the messages come from the
        generation controller) and remove its working file."""
        _, _, files = self._jobs.pop(job_id, (None, None, []))
        for path in files:
            path.unlink(missing_ok=True)
        if job_id == self.expand_job:
            self.expand_job = None
            self.panel.set_expanding(False)

    def _say(self, text: str, kind: str = INFO, **action) -> None:
        self.window.toast.show_message(text, kind, **action)


def _undo(edits: list[QPlainTextEdit]) -> None:
    for edit in edits:
        edit.undo()


def _thumbnail(entry: HistoryEntry) -> QImage:
    thumb = Path(entry.thumb_path)
    return QImage(str(thumb if thumb.is_file() else entry.image_path))


def install(window) -> Understanding:
    """Create the window's understanding actions (menus pick them up) and wire the panels."""
    understanding = Understanding(window)
    window.expand_action = window._action("Expand prompt", understanding.expand, "Ctrl+Shift+P")
    window.describe_action = window._action("Describe image…", understanding.describe_canvas)
    window.interrogate_action = window._action(
        "Interrogate image…", understanding.interrogate_canvas
    )
    window.describe_action.setToolTip("Describe the canvas image in words (image-to-text model)")
    window.interrogate_action.setToolTip("Rank style and detail words for the canvas image (CLIP)")
    window.prompt_panel.expand_requested.connect(understanding.expand)
    window.prompt_panel.expand_cancel_requested.connect(understanding.cancel_expand)
    window.gallery_panel.describe_requested.connect(understanding.describe_entry)
    window.gallery_panel.interrogate_requested.connect(understanding.interrogate_entry)
    return understanding
