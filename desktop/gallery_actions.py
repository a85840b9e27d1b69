"""What the gallery does beyond one click: export copies or delete several results (after
asking), and the toolbar that varies, upscales or redoes the selected result with hires fix."""

from __future__ import annotations

import shutil
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QFileDialog, QMessageBox, QToolBar, QWidget

from engine.history import HistoryEntry


def export_entries(entries: list[HistoryEntry], folder: Path) -> tuple[int, list[str]]:
    """Copy each result's PNG (its settings are in the file) into `folder`, never overwriting
    a file already there. Returns (copied, problems)."""
    copied, problems = 0, []
    for entry in entries:
        target = _free_name(folder / entry.image_path.name)
        try:
            shutil.copyfile(entry.image_path, target)
        except OSError as exc:
            problems.append(f"{entry.image_path.name}: {exc.strerror or exc}")
            continue
        copied += 1
    return copied, problems


def _free_name(path: Path) -> Path:
    candidate, number = path, 2
    while candidate.exists():
        candidate = path.with_name(f"{path.stem}-{number}{path.suffix}")
        number += 1
    return candidate


def export_dialog(parent: QWidget, entries: list[HistoryEntry], show_message) -> None:
    if not entries:
        return
    folder = QFileDialog.getExistingDirectory(parent, f"Export {len(entries)} image(s) to")
    if not folder:
        return
    copied, problems = export_entries(entries, Path(folder))
    if problems:
        show_message(f"Exported {copied}; could not copy " + "; ".join(problems[:3]), "error")
    else:
        show_message(f"Exported {copied} image(s) to {folder}.", "info")


def delete_after_asking(parent: QWidget, gallery, entries: list[HistoryEntry]) -> bool:
    """Several pictures go only after the user says so (a single one has undo-free Delete in
    the menu, as before)."""
    if not entries:
        return False
    answer = QMessageBox.question(
        parent,
        "Delete images",
        f"Delete {len(entries)} images from the gallery and from disk?",
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
        QMessageBox.StandardButton.Cancel,
    )
    if answer != QMessageBox.StandardButton.Yes:
        return False
    gallery.delete_many([e.id for e in entries])
    return True


#: the gallery toolbar: (text, tooltip, the panel's signal it emits for the current result)
TOOLBAR_ACTIONS = (
    ("Vary", "Vary (subtle): the same picture with small changes, a new seed", "vary_requested"),
    ("Vary strong", "Vary (strong): the same prompt and layout, freer changes",
     "vary_strong_requested"),
    ("×2", "Upscale ×2 with the library's upscaler (Lanczos when there is none)",
     "upscale_x2_requested"),
    ("×4", "Upscale ×4 with the library's upscaler (Lanczos when there is none)",
     "upscale_x4_requested"),
    ("Hires fix", "Hires fix: make it again larger, refined in a second pass", "hires_requested"),
)  # fmt: skip


def build_gallery_toolbar(panel) -> QToolBar:
    """Vary, Upscale and Hires fix of the selected result, one click each (the same as its
    context menu). Disabled until a result is selected."""
    bar = QToolBar("Result")
    bar.setObjectName("gallery-toolbar")
    bar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
    for text, tip, signal in TOOLBAR_ACTIONS:
        if signal.startswith("upscale") and not panel.can_upscale:
            continue
        action = QAction(text, bar)
        action.setToolTip(tip)
        action.setObjectName(signal)
        action.triggered.connect(lambda _=False, s=signal: _emit_current(panel, s))
        bar.addAction(action)
    bar.setEnabled(False)
    return bar


def _emit_current(panel, signal: str) -> None:
    entry = panel.selected_entry()
    if entry is not None:
        getattr(panel, signal).emit(entry)
