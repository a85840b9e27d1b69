"""Screenshots of the canvas tools, gallery search, prompt recall, first-load status, Evaluate
and the Train dialog's first emoji render (called by desktop/screenshots.py)."""

from __future__ import annotations

from PySide6.QtCore import QPointF
from PySide6.QtGui import QColor


def tool_shots(app, window, fake, shoot, wait, settle) -> None:
    _status_shots(app, window, shoot)
    _canvas_shots(app, window, shoot, wait)
    _gallery_shots(app, window, shoot)
    _prompt_shots(app, window, fake, shoot, wait)
    _dialog_shots(app, window, shoot, wait, settle)


def _status_shots(app, window, shoot) -> None:
    """The status bar while the first job loads its model, then timing its first step."""
    job = window.job
    job.queued(10_000)
    job.started(10_000)
    job.progress(10_000, 0, 20, {"stage": "loading model"})
    shoot(window, "status-loading-model")
    job.progress(10_000, 1, 20, {})
    shoot(window.statusBar(), "status-timing-steps")
    job.finished(10_000, "result")


def _canvas_shots(app, window, shoot, wait) -> None:
    doc, canvas = window.document, window.canvas
    doc.clear_mask()
    canvas.set_tool("sketch")
    canvas.set_sketch_colour(QColor(20, 20, 20))
    doc.begin_stroke("sketch")
    points = [QPointF(120 + 12 * i, 260 + (40 if i % 2 else -40)) for i in range(24)]
    for start, end in zip(points, points[1:], strict=False):
        doc.paint_segment(start, end, 10, False, QColor(20, 20, 20))
    doc.end_stroke("Sketch")
    shoot(window, "canvas-sketch-layer")
    canvas.set_tool("crop")
    canvas._crop_from, canvas._crop_to = QPointF(60, 80), QPointF(420, 400)
    canvas.viewport().update()
    shoot(window, "canvas-crop")
    canvas._crop_from = canvas._crop_to = None
    canvas.set_tool("brush")
    menu = window.menuBar().actions()[2].menu()  # Canvas
    menu.popup(window.mapToGlobal(window.rect().topLeft()))
    shoot(menu, "canvas-menu")
    menu.hide()
    from desktop.widgets.resize_dialog import resize_canvas

    dialog = resize_canvas(window)
    dialog.width_box.setValue(700)
    shoot(dialog, "resize-dialog")
    dialog.reject()
    upscale = window.upscale_canvas()
    shoot(upscale, "upscale-dialog")
    upscale.reject()


def _gallery_shots(app, window, shoot) -> None:
    panel = window.gallery_panel
    window.gallery.set_starred([window.gallery.entries[1].id], True)
    window.gallery_dock.setFloating(True)
    window.gallery_dock.resize(520, 640)
    for row in (0, 2, 3):
        panel.list.item(row).setSelected(True)
    shoot(window.gallery_dock, "gallery-selection")
    panel.list.clearSelection()
    panel.search.setText("cabin")
    panel.apply_search()
    panel.date_filter.setCurrentIndex(1)
    shoot(window.gallery_dock, "gallery-search")
    panel.search.setText("no such thing")
    panel.apply_search()
    shoot(window.gallery_dock, "gallery-no-match")
    panel.search.clear()
    panel.apply_search()
    panel.date_filter.setCurrentIndex(0)
    window.gallery_dock.setFloating(False)


def _prompt_shots(app, window, fake, shoot, wait) -> None:
    for prompt in ("a red apple on a wooden table", "a __colour__ rocket over the sea"):
        window.prompt_history.add(prompt)
    recall = window.prompt_recall
    recall._fill_menu()
    menu = recall.button.menu()
    menu.popup(recall.button.mapToGlobal(recall.button.rect().bottomLeft()))
    shoot(menu, "recent-prompts")
    menu.hide()


def _dialog_shots(app, window, shoot, wait, settle) -> None:
    evaluate = window.open_tool("desktop.widgets.evaluate_panel", "EvaluatePanel")
    evaluate._show_result(
        {"fid": 186.93, "kid": 0.0461, "kid_std": 0.0031, "count_a": 327, "count_b": 100,
         "seconds": 41.0, "warnings": ["Set B has 100 images: FID is biased upwards below a "
                                       "few thousand; compare runs of the same size."]}
    )  # fmt: skip
    evaluate.resize(1, 1)  # the smallest it can be: nothing is cut
    shoot(evaluate, "evaluate-results-smallest")
    evaluate.close()
    train = window.open_tool("desktop.widgets.train_dialog", "TrainDialog")
    train.data_edit.setText("builtin:emoji")
    train.resolution_combo.setCurrentIndex(train.resolution_combo.findData(16))
    train.start()
    wait(app, lambda: train.progress_bar.value() > 1000)
    shoot(train, "train-rendering-emoji")
    train.cancel()
    train.reject()
    settle(app)
