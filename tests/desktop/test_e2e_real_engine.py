"""End to end with the real in-process engine and a tiny randomly initialised SD pipeline:
type a prompt and press Ctrl+Enter, restore settings from a dropped result, drop an image and
paint a mask for inpaint, cancel mid-run, quit cleanly. One window, one model load (each load
of torch/diffusers costs seconds on this machine)."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QPoint, Qt

from desktop.bridge import EngineBridge
from engine.api import Mode

from .conftest import drop_files

pytestmark = pytest.mark.slow

LONG = 180_000  # ms: the first job imports diffusers and loads the model on a busy machine


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    import torch

    from tests.helpers.tiny_sd import build_sd1

    torch.set_num_threads(1)
    return build_sd1(tmp_path_factory.mktemp("tiny-sd") / "tiny-sd1")


def _ctrl_enter(qtbot, window):
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=3000)
    qtbot.keyClick(
        window.prompt_panel.prompt, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier
    )


def test_real_engine_end_to_end(qtbot, tiny_sd, image_file):
    from desktop.app import create_window

    window = create_window(EngineBridge())
    qtbot.addWidget(window)
    window.show()
    window.start_background_work()
    assert "Loading engine" in window.engine_label.text()
    qtbot.waitUntil(lambda: window.bridge.ready, timeout=LONG)
    try:
        _txt2img_restore_inpaint_cancel(qtbot, window, str(tiny_sd), image_file)
    finally:
        window.close()
    assert not window.bridge._engine.is_running


def _txt2img_restore_inpaint_cancel(qtbot, window, model, image_file):
    settings = window.settings
    settings.set("model", model)
    assert "Preparing Stable Diffusion" in window.engine_label.text()  # imports in background
    qtbot.waitUntil(lambda: window.bridge.warm, timeout=LONG)
    assert window.engine_label.text().endswith("Engine ready")
    for name, value in (("steps", 3), ("width", 64), ("height", 64), ("sampler", "Euler")):
        settings.set(name, value)

    # 1. type a prompt, Ctrl+Enter, the result lands in the gallery and on the canvas
    qtbot.keyClicks(window.prompt_panel.prompt, "a red apple")
    _ctrl_enter(qtbot, window)
    qtbot.waitUntil(lambda: len(window.gallery.entries) == 1, timeout=LONG)
    entry = window.gallery.entries[0]
    assert entry.metadata["prompt"] == "a red apple" and entry.metadata["model"] == model
    assert (entry.width, entry.height) == (64, 64) and window.document.size() == (64, 64)

    # 2. drop that PNG back: its settings are offered and restored
    settings.set("prompt", "something else")
    settings.set("steps", 7)
    drop_files(window.canvas.viewport(), [entry.image_path])
    assert window.toast.action.text() == "Restore settings"
    window.toast.action.click()
    assert settings.get("prompt") == "a red apple" and settings.get("steps") == 3
    assert settings.get("seed") == entry.metadata["seed"]

    # 3. drop a photo, paint a mask: inpaint runs on the real engine
    drop_files(window.canvas.viewport(), [image_file])
    assert settings.mode is Mode.IMG2IMG and window.document.size() == (96, 64)
    window.canvas.fit()
    start = window.canvas.mapFromScene(30, 30)
    viewport = window.canvas.viewport()
    qtbot.mousePress(viewport, Qt.MouseButton.LeftButton, pos=start)
    qtbot.mouseMove(viewport, start + QPoint(60, 10))
    qtbot.mouseRelease(viewport, Qt.MouseButton.LeftButton, pos=start + QPoint(60, 10))
    assert settings.mode is Mode.INPAINT
    _ctrl_enter(qtbot, window)
    qtbot.waitUntil(lambda: len(window.gallery.entries) == 2, timeout=LONG)
    inpainted = window.gallery.entries[0]
    assert inpainted.metadata["mode"] == "inpaint" and (inpainted.width, inpainted.height) == (
        96,
        64,
    )

    # 4. cancel mid-run with Esc: stops within a step, nothing is added, the app keeps working
    settings.set("mode", Mode.TXT2IMG.value)
    settings.set("steps", 400)
    _ctrl_enter(qtbot, window)
    qtbot.waitUntil(lambda: window.job.step >= 1, timeout=LONG)
    qtbot.keyClick(window.canvas, Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: window.job.last_outcome == "cancelled", timeout=30_000)
    assert len(window.gallery.entries) == 2 and window.job.step < 400


@pytest.fixture(scope="module")
def dalle_64(tmp_path_factory):
    """A randomly initialised DALL-E family folder making 64x64 pictures (16x16 tokens)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "families"))
    from dalle_tiny import save_random_model

    return save_random_model(tmp_path_factory.mktemp("dalle") / "dalle-64", resolution=64)


def test_first_launch_inpaint_on_the_builtin_model_keeps_the_unmasked_picture(qtbot, tmp_path):
    """A new user's first edit: a picture from the default built-in model, a mask painted over
    part of it, "a blue heart": only the masked part changes (issue: it replaced everything)."""
    _canvas_inpaint_keeps_the_unmasked_picture(qtbot, "builtin:emoji-ldm")


def test_canvas_inpaint_with_a_dalle_model_keeps_the_unmasked_picture(qtbot, dalle_64):
    """The same edit on the DALL-E family (issue 14): tokens outside the mask are kept, those
    inside resampled, and the canvas's pixels outside the mask stay exactly as they were."""
    _canvas_inpaint_keeps_the_unmasked_picture(qtbot, str(dalle_64))


def _canvas_inpaint_keeps_the_unmasked_picture(qtbot, model: str):
    import numpy as np
    from PIL import Image

    from desktop.app import create_window
    from desktop.images import qimage_to_pil

    window = create_window(EngineBridge())
    qtbot.addWidget(window)
    window.show()
    window.start_background_work()
    qtbot.waitUntil(lambda: window.bridge.ready, timeout=LONG)
    try:
        settings = window.settings
        settings.set("model", model)
        settings.set("steps", 6)
        settings.set("batch_size", 1)
        settings.set("prompt", "a red apple")
        _ctrl_enter(qtbot, window)
        qtbot.waitUntil(lambda: len(window.gallery.entries) == 1, timeout=LONG)
        apple = window.gallery.entries[0]
        window.canvas.fit()
        viewport = window.canvas.viewport()
        start = window.canvas.mapFromScene(20, 20)
        qtbot.mousePress(viewport, Qt.MouseButton.LeftButton, pos=start)
        qtbot.mouseMove(viewport, start + QPoint(40, 40))
        qtbot.mouseRelease(viewport, Qt.MouseButton.LeftButton, pos=start + QPoint(40, 40))
        assert settings.mode is Mode.INPAINT
        mask = np.asarray(qimage_to_pil(window.document.mask, "L")) > 0
        assert 0 < mask.mean() < 0.9
        settings.set("prompt", "a blue heart")
        _ctrl_enter(qtbot, window)
        qtbot.waitUntil(lambda: len(window.gallery.entries) == 2, timeout=LONG)
        heart = window.gallery.entries[0]
        before = np.asarray(Image.open(apple.image_path).convert("RGB"), np.int16)
        after = np.asarray(Image.open(heart.image_path).convert("RGB"), np.int16)
        assert heart.metadata["mode"] == "inpaint" and after.shape == before.shape
        assert np.abs(after - before)[~mask].max() <= 1
        assert np.abs(after - before)[mask].mean() > 3
        assert settings.mode is Mode.INPAINT  # the mode stays as chosen
    finally:
        window.close()
