"""Dropping another app's PNG: the toast says from which app, the review dialog shows what was
read and what will not carry over, and restoring changes only what the file holds."""

from __future__ import annotations

import shutil
from pathlib import Path

from PySide6.QtWidgets import QLabel, QPushButton

from .conftest import drop_files

SAMPLES = Path(__file__).resolve().parents[1] / "metadata" / "samples"


def _texts(widget) -> list[str]:
    return [label.text() for label in widget.findChildren(QLabel)]


def _dropped(window, tmp_path, name: str):
    # the samples are 1x1 crops; a real picture of the same file keeps its chunks
    path = tmp_path / name
    shutil.copy(SAMPLES / name, path)
    assert drop_files(window.canvas.viewport(), [path])
    return path


def test_a_comfyui_drop_is_reviewed_then_restores_only_what_the_file_holds(window, tmp_path):
    window.settings.set("width", 640)
    window.settings.set("height", 384)
    _dropped(window, tmp_path, "img2img_cropped.png")
    assert "carries settings from ComfyUI" in window.toast.label.text()
    window.toast.action.click()
    dialog = _open_dialog(window)
    texts = " ".join(_texts(dialog))
    assert "ComfyUI" in texts and "280823642470253" in texts  # the 48-bit seed, whole
    assert "size is not in the file" in texts
    restore = next(b for b in dialog.findChildren(QPushButton) if b.text() == "Restore settings")
    restore.click()
    settings = window.settings
    assert settings.get("seed") == 280823642470253 and settings.get("seed_mode") == "fixed"
    assert settings.get("prompt").startswith("photograph of victorian woman")
    assert (settings.get("steps"), settings.get("sampler")) == (20, "DPM++ 2M")
    assert (settings.get("width"), settings.get("height")) == (640, 384)  # not 512x512


def _open_dialog(window):
    from desktop.widgets.imported_settings import ImportedSettingsDialog

    dialogs = window.findChildren(ImportedSettingsDialog)
    assert dialogs, "the review dialog did not open"
    return dialogs[-1]


def test_fooocus_values_easel_cannot_run_are_shown_as_written(window, tmp_path):
    _dropped(window, tmp_path, "fooocus1_cropped.png")
    assert "Fooocus" in window.toast.label.text()
    window.toast.action.click()
    texts = " ".join(_texts(_open_dialog(window)))
    assert "dpmpp_2m_sde_gpu (karras)" in texts and "will use 'Euler a'" in texts
    assert "juggernautXL_v8Rundiffusion' is not in your library" in texts
    assert "6952411511246973023" in texts


def test_a_jpeg_from_a1111_offers_its_settings_too(window, tmp_path):
    _dropped(window, tmp_path, "automatic1111_cropped.jpg")
    assert "carries settings from AUTOMATIC1111" in window.toast.label.text()


def test_an_image_without_settings_offers_nothing(window, tmp_path, image_file):
    assert drop_files(window.canvas.viewport(), [image_file])
    assert "carries settings" not in window.toast.label.text()
