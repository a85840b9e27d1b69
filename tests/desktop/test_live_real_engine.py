"""Live painting on the real in-process engine with the built-in model: a stroke on the sketch
layer brings one live picture, made image-to-image from the canvas with the live plan, shown in
the pane and kept nowhere until Keep."""

from __future__ import annotations

from PySide6.QtCore import QPointF
from PySide6.QtGui import QColor, QImage

from desktop.bridge import EngineBridge
from desktop.state.live import NATIVE_LIVE_STEPS

LONG = 120_000  # ms: the first job imports torch and loads the model on a busy machine


def test_a_stroke_brings_one_live_update_from_the_built_in_model(qtbot):
    import torch

    from desktop.app import create_window

    torch.set_num_threads(1)
    window = create_window(EngineBridge(preload=("torch", "engine.generate")))
    qtbot.addWidget(window)
    window.show()
    window.start_background_work()
    try:
        qtbot.waitUntil(lambda: window.bridge.ready, timeout=LONG)
        window.settings.set("model", "builtin:emoji-ldm")
        window.settings.set("prompt", "a red apple")
        picture = QImage(64, 64, QImage.Format.Format_ARGB32)
        picture.fill(QColor(40, 120, 200))
        window.document.set_image(picture, "Open")
        updates, kinds = [], []
        window.live.updated.connect(lambda job, seconds: updates.append((job, seconds)))
        window.bridge.live_event.connect(lambda job, kind, payload: kinds.append(kind))
        window.live_action.setChecked(True)  # the first update loads the model
        qtbot.waitUntil(lambda: len(updates) == 1, timeout=LONG)
        doc = window.document
        doc.begin_stroke("sketch")
        doc.paint_segment(QPointF(10, 10), QPointF(50, 50), 8, False, QColor(255, 40, 40))
        doc.end_stroke("Sketch")
        qtbot.waitUntil(lambda: len(updates) == 2, timeout=LONG)
        qtbot.wait(300)
        assert len(updates) == 2 and "failed" not in kinds and "preview" in kinds
        outcome = window.live.latest
        assert (outcome.image.width(), outcome.image.height()) == (64, 64)
        request = outcome.metadata[0]
        assert request["mode"] == "img2img" and request["steps"] == NATIVE_LIVE_STEPS
        assert window.gallery_panel.list.count() == 0 and window.live.pane.keep.isEnabled()
    finally:
        window.close()
    assert not window.bridge._engine.is_running
