"""Screenshots of control (issue 12): the Control panel with two units, an image prompt, a region
and the hires fix; the same panel for a model that cannot be steered; the canvas with a sketch
and two regions; the gallery's menu and toolbar with Vary / Upscale / Hires fix.

Called by desktop/screenshots.py; on its own (only these shots, on the fake engine):
    python -m desktop.screenshots_control screenshots
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from PySide6.QtCore import QPointF
from PySide6.QtGui import QColor, QImage

SD_MODEL = "/models/sd15-dreamshaper.safetensors"  # an SD path: the panel is enabled for it
CONTROLNET = "/models/controlnet/control_v11p_sd15_scribble.safetensors"


def control_shots(app, window, shoot) -> None:
    from desktop.control_wiring import choose_tool
    from desktop.state.control import SOURCE_CANVAS, SOURCE_FILE, save_control_image

    settings, control = window.settings, window.control
    settings.set("model", SD_MODEL)
    _scribble(window)
    control.add_unit(model=CONTROLNET)
    edges = control.add_unit(SOURCE_CANVAS, model="/models/controlnet/control_v11p_sd15_canny")
    assert edges is not None
    control.set_unit(1, weight=0.65, start=0.0, end=0.8)
    reference = save_control_image(_reference_picture(), "reference")
    control.add_image_prompt(str(reference), 0.6)
    _regions(window)
    control.set_hires(enabled=True, scale=2.0, strength=0.45)
    window.control_dock.setFloating(True)
    window.control_dock.resize(420, 1180)
    shoot(window.control_dock, "control-panel-two-units")
    window.control_dock.setFloating(False)
    window.control_dock.raise_()
    window.canvas.fit()
    choose_tool(window, "region")
    shoot(window, "canvas-sketch-two-regions")
    window.control.set_unit(0, source=SOURCE_FILE, image_path=str(reference))
    settings.set("model", "builtin:emoji-ldm")  # the built-in: cannot be steered
    window.control_dock.setFloating(True)
    window.control_dock.resize(420, 520)
    shoot(window.control_dock, "control-panel-disabled")
    window.control_dock.setFloating(False)
    window.prompt_dock.raise_()
    window.canvas.set_tool("brush")
    _gallery_shots(window, shoot)


def _scribble(window) -> None:
    """White strokes on the sketch layer: a house and a hill, as a user would scribble."""
    doc = window.document
    width, height = doc.size()
    if not width:
        return
    s = min(width, height) / 512
    lines = [((60, 400), (452, 400)), ((140, 400), (140, 250)), ((370, 400), (370, 250)),
             ((120, 260), (256, 150)), ((256, 150), (390, 260)), ((220, 400), (220, 320)),
             ((220, 320), (280, 320)), ((280, 320), (280, 400)), ((20, 470), (200, 430)),
             ((200, 430), (492, 470))]  # fmt: skip
    doc.begin_stroke("sketch")
    for (x0, y0), (x1, y1) in lines:
        doc.paint_segment(QPointF(x0 * s, y0 * s), QPointF(x1 * s, y1 * s), 7, False)
    doc.end_stroke("Sketch")


def _regions(window) -> None:
    regions = window.control.regions
    width, height = window.document.size()
    s = min(width, height) / 512
    for prompt, weight, strokes in (
        ("a red tiled roof", 1.2, [((150, 210), (360, 210)), ((200, 170), (310, 170))]),
        ("a calm lake at dusk", 1.0, [((40, 470), (470, 470)), ((60, 500), (450, 500))]),
    ):
        region = regions.add(prompt, weight)
        regions.begin_stroke()
        for (x0, y0), (x1, y1) in strokes:
            regions.paint_segment(QPointF(x0 * s, y0 * s), QPointF(x1 * s, y1 * s), 46 * s, False)
        regions.end_stroke()
        assert region is not None


def _reference_picture() -> QImage:
    image = QImage(96, 96, QImage.Format.Format_RGB32)
    for y in range(96):
        for x in range(96):
            image.setPixelColor(x, y, QColor(40 + x * 2, 90 + y, 200 - x))
    return image


def _gallery_shots(window, shoot) -> None:
    panel = window.gallery_panel
    if not window.gallery.entries:
        return
    window.gallery_dock.setFloating(True)
    window.gallery_dock.resize(520, 640)
    panel.select_entry(window.gallery.entries[0].id)
    shoot(window.gallery_dock, "gallery-toolbar-vary")
    menu = panel.menu_for(window.gallery.entries[0])
    menu.popup(panel.mapToGlobal(panel.rect().center()))
    shoot(menu, "gallery-menu-vary-upscale-hires")
    menu.hide()
    window.gallery_dock.setFloating(False)


def main(argv: list[str] | None = None) -> int:
    """Only these shots: a window on the fake engine with three results, then control_shots."""
    argv = list(sys.argv[1:] if argv is None else argv)
    out_dir = Path(argv[0] if argv else "screenshots").resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    with tempfile.TemporaryDirectory(prefix="easel-shots-") as data_dir:
        os.environ["EASEL_DATA_DIR"] = data_dir
        for path in _render(out_dir):
            print(path)
    return 0


def _render(out_dir: Path) -> list[Path]:
    from desktop.screenshots import _settle, _wait, fake_engine_window

    app, window, engines = fake_engine_window(steps=3)
    window.start_background_work()
    _wait(app, lambda: window.bridge.ready)
    window.settings.set("prompt", "a cosy cabin in a snowy forest, warm light in the windows")
    window.settings.set("model", SD_MODEL)
    for colour in ((235, 120, 70), (120, 200, 140), (90, 150, 235)):
        engines[0].queue_script(steps=3, colour=colour)
        window.generation.generate()
        _wait(app, lambda: not window.job.busy)
    window.toast.hide()
    shots: list[Path] = []

    def shoot(widget, name: str) -> None:
        _settle(app)
        path = out_dir / f"{name}.png"
        widget.grab().save(str(path))
        shots.append(path)

    control_shots(app, window, shoot)
    window.close()
    return shots


if __name__ == "__main__":
    sys.exit(main())
