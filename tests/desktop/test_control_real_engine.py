"""Vary and Hires-free continuations on the real in-process engine with the built-in model: the
gallery's Vary (strong) runs as image-to-image from the result and the kept picture's metadata
says which item it varies. Slow: one real engine, the small built-in model, few steps."""

from __future__ import annotations

import pytest

from desktop.bridge import EngineBridge

pytestmark = pytest.mark.slow

LONG = 180_000  # ms: the first job loads torch and the model on a busy machine


def test_vary_strong_of_a_builtin_result_on_the_real_engine(qtbot):
    import numpy as np
    from PIL import Image

    from desktop.app import create_window

    window = create_window(EngineBridge())
    qtbot.addWidget(window)
    window.show()
    window.start_background_work()
    qtbot.waitUntil(lambda: window.bridge.ready, timeout=LONG)
    try:
        settings = window.settings
        settings.set("model", "builtin:emoji-ldm")
        settings.set("steps", 4)
        settings.set("batch_size", 1)
        settings.set("prompt", "a red apple")
        window.generation.generate()
        qtbot.waitUntil(lambda: len(window.gallery.entries) == 1, timeout=LONG)
        apple = window.gallery.entries[0]
        menu = window.gallery_panel.menu_for(apple)
        next(a for a in menu.actions() if a.text() == "Vary (strong)").trigger()
        qtbot.waitUntil(lambda: len(window.gallery.entries) == 2, timeout=LONG)
        varied = window.gallery.entries[0]
        assert varied.metadata["mode"] == "img2img" and varied.metadata["strength"] == 0.7
        origin = varied.metadata["extras"]["variation_of"]
        assert origin["entry_id"] == apple.id and origin["kind"] == "vary-strong"
        assert origin["seed"] == apple.metadata.get("seed_used", apple.metadata["seed"])
        before = np.asarray(Image.open(apple.image_path).convert("RGB"), np.int16)
        after = np.asarray(Image.open(varied.image_path).convert("RGB"), np.int16)
        assert after.shape == before.shape and np.abs(after - before).mean() > 1
        request = varied.generation_request()
        assert request is not None and request.extras["variation_of"] == origin  # reusable
    finally:
        window.close()
