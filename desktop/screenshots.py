"""Render the main screens offscreen to PNG files, to look at them the way a user would.

    python -m desktop.screenshots screenshots      (or: make screenshots)

Runs the real window on the scriptable fake engine in a throw-away data folder (the user's
gallery and settings are never touched): the main window with results, the canvas with a mask,
a generation in progress with its live preview, an error message, the style menu, prompt
expansion, describe and interrogate, the gallery, the model browser and the settings dialog;
then the canvas tools (crop, sketch layer, resize, upscale), the gallery's search and
selection, recent prompts, the first-load status, Evaluate with results and the Train dialog
rendering the built-in emoji set (desktop/screenshots_tools.py); the Control panel, the canvas
with a sketch and two regions and the gallery's Vary/Upscale/Hires (screenshots_control.py).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

#: ComfyUI's scaled-fp8 T5, the file most FLUX/SD3 users have
T5_SCALED_FP8 = "t5xxl_fp8_e4m3fn_scaled.safetensors"


def _wait(app, condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.005)
    if not condition():
        raise RuntimeError("the screen did not reach the expected state in time")


def _settle(app, seconds: float = 0.15) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()


def fake_engine_window(steps: int):
    """(app, window, engines): the main window at the shots' size over the fake engine."""
    from PySide6.QtWidgets import QApplication

    import desktop  # noqa: F401 - PySide6 reference-count workaround
    from desktop.app import create_window
    from desktop.bridge import EngineBridge
    from desktop.testing.fake_engine import FakeEngine, Script

    app = QApplication.instance() or QApplication([sys.argv[0]])
    engines: list[FakeEngine] = []

    def factory(sink):
        engines.append(FakeEngine(sink, default=Script(steps=steps, colour=(90, 150, 235))))
        return engines[-1]

    window = create_window(EngineBridge(factory, preload=()))
    window.resize(1360, 860)
    window.show()
    return app, window, engines


def render(out_dir: Path) -> list[Path]:
    from PySide6.QtCore import QPointF

    app, window, engines = fake_engine_window(steps=6)
    shots: list[Path] = []

    def shoot(widget, name: str) -> None:
        _settle(app)
        path = out_dir / f"{name}.png"
        widget.grab().save(str(path))
        shots.append(path)

    shoot(window, "first-launch-loading-engine")  # empty canvas, hint, "Loading engine…"
    window.start_background_work()
    _wait(app, lambda: window.bridge.ready)

    fake = engines[0]
    settings = window.settings
    settings.set("prompt", "a cosy cabin in a snowy forest, warm light in the windows")
    settings.set("negative_prompt", "blurry, low quality")
    settings.set("width", 512)
    settings.set("height", 512)
    for colour, batch in (((235, 120, 70), 4), ((120, 200, 140), 1), ((90, 150, 235), 2)):
        fake.queue_script(steps=3, colour=colour)
        settings.set("batch_size", batch)
        window.generation.generate()
        _wait(app, lambda: not window.job.busy)
    window.toast.hide()
    shoot(window, "main-window")

    # the canvas with a mask painted over part of the result
    doc = window.document
    doc.begin_stroke()
    for y in range(180, 340, 24):
        doc.paint_segment(QPointF(150, y), QPointF(360, y + 10), 48, False)
    doc.end_stroke()
    window.canvas.fit()
    shoot(window, "canvas-mask")

    # a job in progress: progress bar, step count, time left, live preview on the canvas
    fake.queue_script(steps=20, pause_at=9, step_seconds=0.02, colour=(240, 190, 90))
    window.generation.generate()
    _wait(app, lambda: fake.paused.is_set() and window.job.step == 8)
    shoot(window, "progress-live-preview")
    fake.release()
    _wait(app, lambda: not window.job.busy)

    window.show_message(
        "Model not found: 'dreamshaper.safetensors'. Check the path, or add the "
        "model in the model browser.",
        "error",
    )
    shoot(window, "error-message")
    window.toast.hide()
    _imported_settings_shots(window, shoot)
    _understanding_shots(app, window, fake, shoot)

    window.gallery_dock.setFloating(True)
    window.gallery_dock.resize(520, 640)
    shoot(window.gallery_dock, "gallery")
    menu = window.gallery_panel.menu_for(window.gallery.entries[0])
    menu.popup(window.gallery_panel.mapToGlobal(window.gallery_panel.rect().center()))
    shoot(menu, "gallery-menu")  # with Describe image… and Interrogate…
    menu.hide()
    window.gallery_dock.setFloating(False)

    _add_modern_records()
    window.library.refresh()
    browser = window.show_model_browser()
    browser.select("builtin:emoji-ldm")  # its card and sample grid beside the table
    _wait(app, lambda: not browser.hashes.busy)
    shoot(browser, "model-browser")
    browser.select(str(Path(os.environ["EASEL_DATA_DIR"]) / "flux1-dev-Q8_0.gguf"))
    shoot(browser, "model-browser-flux")  # family, variant and what it runs
    browser.select(str(Path(os.environ["EASEL_DATA_DIR"]) / "t5xxl_fp16.safetensors"))
    shoot(browser, "model-browser-parts")  # a text encoder: a part, not a model to pick
    browser.select(str(Path(os.environ["EASEL_DATA_DIR"]) / T5_SCALED_FP8))
    shoot(browser, "model-browser-scaled-fp8")  # ComfyUI's scaled fp8: runs, says so
    browser.close()
    dialog = window.show_settings()
    shoot(dialog, "settings")
    dialog.close()
    _batch_shots(window, shoot)
    explorer = window.open_tool("desktop.widgets.latent_explorer", "LatentExplorer")
    explorer.model_combo.setCurrentIndex(
        explorer.model_combo.findText("emoji-dcgan (DCGAN, 64 px, built-in)")
    )
    explorer.count_spin.setValue(8)
    explorer.columns_spin.setValue(4)
    explorer.explore()
    _wait(app, lambda: explorer.job_id is None)
    shoot(explorer, "latent-explorer")  # a seed interpolation grid (fake engine's pictures)
    explorer.close()
    _live_shots(app, window, fake, shoot)
    from desktop.screenshots_tools import tool_shots

    tool_shots(app, window, fake, shoot, _wait, _settle)
    from desktop.screenshots_control import control_shots

    control_shots(app, window, shoot)  # Control panel, sketch and regions, gallery Vary
    window.close()
    return shots


def _live_shots(app, window, fake, shoot) -> None:
    """Live painting: the Live switch on, sketch strokes on the canvas, a step preview in the
    pane, then the finished live picture with Keep."""
    from PySide6.QtCore import QPointF
    from PySide6.QtGui import QColor

    from desktop.testing.fake_engine import Script

    doc = window.document
    doc.clear_mask()
    fake.default = Script(steps=4, colour=(240, 170, 60))
    window.live_action.setChecked(True)
    _wait(app, lambda: window.live.latest is not None)
    fake.queue_script(steps=6, pause_at=4, colour=(250, 120, 90))
    width, height = doc.size()
    doc.begin_stroke("sketch")
    for row in range(6):  # yellow strokes across the middle, whatever the canvas size
        y = height * (0.25 + row * 0.08)
        start, end = QPointF(width * 0.25, y), QPointF(width * 0.6, y + height * 0.08)
        doc.paint_segment(start, end, max(2, width // 28), False, QColor(255, 214, 90))
    doc.end_stroke("Sketch")
    _wait(app, lambda: fake.paused.is_set() and not window.live.pane.final, 5)
    shoot(window, "live-painting-step-preview")
    fake.release()
    _wait(app, lambda: window.live.pane.final and window.live.queue.running is None)
    shoot(window, "live-painting")
    # a model without a fast preview decoder: the pane offers to build one
    missing = {"preview_decoder": "missing", "notices": []}
    fake.default = Script(steps=2, colour=(120, 200, 140), extra_info=missing)
    doc.clear_sketch()
    _wait(app, lambda: not window.live.pane.build.isHidden())
    shoot(window, "live-painting-build-preview")
    window.live_action.setChecked(False)
    fake.default = Script(steps=6, colour=(90, 150, 235))


def _batch_shots(window, shoot) -> None:
    """The Batch dialog as it opens from the settings, and mid-run (its own event handling,
    fed the events a real run sends: progress with rate and time left, the latest image)."""
    from PIL import Image

    from engine.events import Preview, Progress

    dialog = window.open_tool("desktop.widgets.batch_dialog", "BatchDialog")
    dialog.prompts_edit.setPlainText(
        "a cosy cabin in a snowy forest\na lighthouse at dusk\na red apple on a table"
    )
    dialog.count_spin.setValue(16)
    shoot(dialog, "batch-dialog")
    dialog.job_id = -1  # as if submitted: show the running state
    dialog._set_running(True)
    info = {"images_per_second": 0.42, "seconds_left": 69.0, "done": 19, "failed": 0}
    dialog._apply(Progress(-1, step=19, total=48, info=info))
    dialog._apply(Preview(-1, image=Image.new("RGB", (64, 64), (235, 120, 70))))
    shoot(dialog, "batch-running")
    dialog.job_id = None
    dialog._set_running(False)
    dialog.close()


#: real files other apps wrote (sd-parsers' sample set, in the checkout's tests)
SAMPLE_IMAGES = Path(__file__).resolve().parents[1] / "tests" / "metadata" / "samples"


def _imported_settings_shots(window, shoot) -> None:
    """A dropped Fooocus PNG: the toast saying from which app, then the review dialog."""
    from desktop.images import read_imported_settings

    for name, shot in (("fooocus1_cropped.png", "import-fooocus"),
                       ("night_evening_day_morning_cropped.png", "import-comfyui")):  # fmt: skip
        found = read_imported_settings(SAMPLE_IMAGES / name)
        if found is None:  # a bundle without the test files
            return
        window.settings_import.offer(found, name)
        if shot == "import-fooocus":
            shoot(window, "import-toast")
        dialog = window.settings_import.review(found, name)
        shoot(dialog, shot)
        dialog.close()
    window.toast.hide()


def _add_modern_records() -> None:
    """SD3 and FLUX rows as a scan records them (files are not needed to show the list)."""
    from engine.library.records import ModelLibrary

    folder = Path(os.environ["EASEL_DATA_DIR"])
    rows = (
        ("flux1-dev-Q8_0.gguf", "checkpoint", "flux", "dev,Q8_0", 12_700_000_000),
        ("flux1-schnell.safetensors", "checkpoint", "flux", "schnell,fp8", 11_900_000_000),
        ("flux1-dev-scaled.safetensors", "checkpoint", "flux", "dev,fp8-scaled", 11_910_000_000),
        ("sd3.5_medium", "checkpoint", "sd3", "3.5-medium", 5_100_000_000),
        ("sd3.5_large_turbo.safetensors", "checkpoint", "sd3", "large-turbo", 16_500_000_000),
        # the separate parts transformer-only files load with (ComfyUI's text_encoders, vae)
        ("t5xxl_fp16.safetensors", "text_encoder", "", "t5-xxl", 9_790_000_000),
        (T5_SCALED_FP8, "text_encoder", "", "t5-xxl,fp8-scaled", 5_160_000_000),
        ("clip_l.safetensors", "text_encoder", "", "clip-l", 246_000_000),
        ("clip_g.safetensors", "text_encoder", "", "clip-g", 1_390_000_000),
        ("ae.safetensors", "vae", "", "16-channel", 335_000_000),
    )
    library = ModelLibrary()
    for name, kind, base, variant, size in rows:
        path = folder / name
        path.write_bytes(b"")
        library.save(
            {
                "name": name.removesuffix(".safetensors").removesuffix(".gguf"),
                "kind": kind,
                "base": base,
                "variant": variant,
                "layout": "diffusers" if "." not in name else "single_file",
                "path": str(path),
                "source": "user",
                "size": size,
                "status": "ok",
            }
        )


def _understanding_shots(app, window, fake, shoot) -> None:
    """The style picker, Expand (running, then done), Describe without a model folder, the
    caption and interrogate dialogs."""
    import tempfile as _tempfile

    panel = window.prompt_panel
    picker = panel.style_picker
    menu = picker.menu()
    picker.showPopup()
    shoot(menu, "style-menu")
    picker.search.setText("light")
    menu.adjustSize()
    shoot(menu, "style-search")
    menu.hide()
    picker._actions["Watercolor"].trigger()  # the expansion then adds detail words only
    window.settings.set("prompt", "a lighthouse on a cliff")
    fake.queue_script(
        steps=2,
        pause_at=2,
        stage="Finding styles and keywords",
        extra_info={
            "prompt": "cinematic film still of a lighthouse on a cliff, anamorphic lens, "
            "golden hour, rule of thirds, dramatic sky",
            "negative_prompt": "cartoon, flat lighting",
            "style": "Cinematic",
            "method": "retrieval",
            "keywords": ["golden hour", "rule of thirds", "dramatic sky", "serene"],
        },
    )
    window.understanding.expand()
    _wait(app, fake.paused.is_set)
    shoot(window, "expand-running")
    fake.release()
    _wait(app, lambda: not window.job.busy)
    shoot(window, "expand-done")
    window.toast.hide()
    window.describe_action.trigger()
    shoot(window, "describe-needs-model")
    window.toast.hide()
    folder = _tempfile.mkdtemp(prefix="easel-shot-model-")
    for role in ("caption_model", "clip_model"):
        window.preferences.set_understanding_folder(role, folder)
    fake.queue_script(steps=2, extra_info={"caption": "a red lighthouse on a rocky cliff at dusk"})
    window.describe_action.trigger()
    _wait(app, lambda: bool(window.understanding.dialogs))
    shoot(window.understanding.dialogs[-1], "describe-caption")
    window.understanding.dialogs[-1].close()
    info = {
        "styles": [
            {"name": "Cinematic", "text": "cinematic film still", "score": 0.312},
            {"name": "Oil Painting", "text": "oil painting", "score": 0.274},
            {"name": "Watercolor", "text": "watercolor painting", "score": 0.251},
        ],
        "keywords": [
            {"category": "lighting", "text": "golden hour", "score": 0.298},
            {"category": "mood", "text": "serene", "score": 0.263},
            {"category": "composition", "text": "rule of thirds", "score": 0.241},
            {"category": "color", "text": "warm tones", "score": 0.233},
        ],
    }
    fake.queue_script(steps=2, extra_info=info)
    window.interrogate_action.trigger()
    _wait(app, lambda: bool(window.understanding.dialogs))
    shoot(window.understanding.dialogs[-1], "interrogate")
    window.understanding.dialogs[-1].close()
    _settle(app)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    out_dir = Path(argv[0] if argv else "screenshots").resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    with tempfile.TemporaryDirectory(prefix="easel-shots-") as data_dir:
        os.environ["EASEL_DATA_DIR"] = data_dir  # never the user's gallery or settings
        for path in render(out_dir):
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
