"""The main window against the scriptable fake engine: generate, progress, errors, cancel,
drops, masks, outpaint, gallery actions, persistence."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image
from PySide6.QtCore import QPoint, Qt, QUrl
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QPushButton

from desktop.testing.fake_engine import Script
from desktop.widgets.prompt_panel import FIRST_RUN_HINT
from engine.api import GenerationRequest, Mode

from .conftest import drop_files, drop_urls
from .test_images import png_header_only

ROOT = Path(__file__).resolve().parents[2]


def press_generate(qtbot, window):
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=3000)
    qtbot.keyClick(
        window.prompt_panel.prompt, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier
    )


def test_first_launch_defaults(window):
    assert window.settings.get("model") == "builtin:emoji-ldm"
    assert window.prompt_panel.prompt.placeholderText() == FIRST_RUN_HINT
    assert window.prompt_panel.model.currentData() == "builtin:emoji-ldm"
    assert window.engine_label.text().endswith("Engine ready")


def test_the_built_in_model_shows_its_own_fixed_size(window, tmp_path):
    panel = window.prompt_panel
    assert window.settings.get("model") == "builtin:emoji-ldm"
    assert not panel.width_box.isEnabled() and not panel.size_preset.isEnabled()
    assert (panel.width_box.value(), panel.height_box.value()) == (64, 64)
    assert panel.size_note.text() == "This model makes 64 × 64 pictures"
    assert window.settings.get("width") == 512  # the Stable Diffusion size is kept
    window.settings.set("model", str(tmp_path / "some-sd-model.safetensors"))
    assert panel.width_box.isEnabled() and panel.width_box.value() == 512
    assert panel.size_note.isHidden()


def test_the_built_in_model_offers_only_the_samplers_it_runs(window, tmp_path):
    panel = window.prompt_panel
    window.settings.set("sampler", "Euler a")
    items = lambda: [panel.sampler.itemText(i) for i in range(panel.sampler.count())]  # noqa: E731
    assert items() == ["DDIM", "DDPM"]
    assert panel.sampler.currentText() == "DDIM"  # what the engine will run
    assert window.settings.get("sampler") == "Euler a"  # the SD choice is kept
    panel.sampler.setCurrentText("DDPM")
    assert window.settings.get("sampler") == "DDPM"
    window.settings.set("model", str(tmp_path / "some-sd-model.safetensors"))
    assert "Euler a" in items() and panel.sampler.currentText() == "DDPM"


def test_ctrl_enter_generates_and_result_lands_in_gallery(qtbot, window, fake):
    fake.default = Script(steps=4, step_seconds=0.02)
    qtbot.keyClicks(window.prompt_panel.prompt, "a red apple")
    window.settings.set("width", 64)
    window.settings.set("height", 64)
    window.settings.set("batch_size", 2)
    steps_seen = []
    window.job.changed.connect(lambda: steps_seen.append(window.job.step))
    previews = []
    window.document.preview_changed.connect(lambda: previews.append(window.document.preview))
    press_generate(qtbot, window)
    qtbot.waitUntil(lambda: window.gallery_panel.list.count() == 2, timeout=5000)
    request = fake.requests[-1]
    assert (request.prompt, request.mode, request.batch_size) == ("a red apple", Mode.TXT2IMG, 2)
    assert {1, 2, 3, 4} <= set(steps_seen)
    assert any(p is not None for p in previews) and window.document.preview is None
    assert window.document.has_image() and window.document.size() == (64, 64)
    assert not window.job.busy and not window.progress.isVisible()
    assert window.settings.last_seed == window.gallery.entries[0].metadata["seed_used"]


def test_progress_bar_shows_steps_and_time_left(qtbot, window, fake):
    fake.queue_script(steps=4, pause_at=3, step_seconds=0.01)
    window.generation.generate()
    qtbot.waitUntil(lambda: window.job.step == 2, timeout=5000)
    assert window.progress.isVisible() and window.progress.maximum() == 4
    assert window.progress.value() == 2
    assert window.progress_label.text().startswith("Step 2/4")
    assert "left" in window.progress_label.text()
    assert window.prompt_panel.cancel.isEnabled()
    fake.release()
    qtbot.waitUntil(lambda: not window.job.busy, timeout=5000)


def test_engine_error_is_a_message_and_app_keeps_working(qtbot, window, fake):
    fake.queue_script(steps=1, outcome="failed", message="Out of memory. Try a smaller size.")
    window.generation.generate()
    qtbot.waitUntil(lambda: window.toast.isVisible(), timeout=5000)
    assert window.toast.kind == "error" and "Out of memory" in window.toast.label.text()
    assert not window.job.busy
    window.generation.generate()
    qtbot.waitUntil(lambda: len(window.gallery.entries) == 1, timeout=5000)


def test_escape_cancels_mid_run(qtbot, window, fake):
    fake.queue_script(steps=5, pause_at=2)
    window.generation.generate()
    assert fake.paused.wait(5)
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=3000)
    qtbot.keyClick(window.canvas, Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: window.job.last_outcome == "cancelled", timeout=5000)
    assert window.gallery.entries == [] and window.document.preview is None
    assert "Cancelled" in window.toast.label.text()


def test_invalid_settings_never_reach_the_engine(qtbot, window, fake):
    window.settings.set("mode", Mode.INPAINT.value)
    assert window.generation.generate() is None
    assert "needs an image" in window.toast.label.text() and fake.requests == []


def test_drop_image_then_paint_mask_makes_an_inpaint_request(qtbot, window, fake, image_file):
    assert drop_files(window.canvas.viewport(), [image_file])
    assert window.document.size() == (96, 64)
    assert window.settings.mode is Mode.IMG2IMG
    assert window.prompt_panel.strength.isVisible()
    window.canvas.fit()
    centre = window.canvas.mapFromScene(48, 32)
    qtbot.mousePress(window.canvas.viewport(), Qt.MouseButton.LeftButton, pos=centre)
    qtbot.mouseMove(window.canvas.viewport(), centre + QPoint(30, 0))
    qtbot.mouseRelease(
        window.canvas.viewport(), Qt.MouseButton.LeftButton, pos=centre + QPoint(30, 0)
    )
    assert window.document.has_mask() and window.settings.mode is Mode.INPAINT
    window.generation.generate()
    qtbot.waitUntil(lambda: len(window.gallery.entries) == 1, timeout=5000)
    request = fake.requests[-1]
    assert request.mode is Mode.INPAINT and (request.width, request.height) == (96, 64)
    window.undo_action.trigger()  # the result
    window.undo_action.trigger()  # the stroke
    assert not window.document.has_mask() and window.settings.mode is Mode.IMG2IMG
    window.redo_action.trigger()
    assert window.document.has_mask() and window.settings.mode is Mode.INPAINT


def test_working_files_hold_the_canvas_while_the_job_runs(qtbot, window, fake, image_file):
    fake.queue_script(steps=3, pause_at=2)
    window.images.open_path(image_file)
    window.generation.generate()
    assert fake.paused.wait(5)
    init = fake.requests[-1].init_image
    with Image.open(init) as saved:
        assert saved.size == (96, 64) and saved.getpixel((10, 10))[:3] == (20, 30, 120)
    fake.release()
    qtbot.waitUntil(lambda: not window.job.busy, timeout=5000)
    assert not __import__("pathlib").Path(init).exists()  # cleaned up after the job


def test_bad_drops_leave_the_canvas_unchanged(qtbot, window, image_file, tmp_path):
    window.images.open_path(image_file)
    before = window.document.image
    depth = window.document.undo_stack.count()
    text = tmp_path / "readme.png"
    text.write_text("not an image")
    corrupt = tmp_path / "cut.jpg"
    Image.new("RGB", (50, 50)).save(corrupt)
    corrupt.write_bytes(corrupt.read_bytes()[:80])
    bomb = png_header_only(tmp_path / "bomb.png", 9000, 9000)
    cases = [
        ([QUrl.fromLocalFile(str(text))], "not a picture Easel can read"),
        ([QUrl.fromLocalFile(str(corrupt))], "damaged"),
        ([QUrl.fromLocalFile(str(bomb))], "81 MP"),
        ([QUrl.fromLocalFile(str(tmp_path))], "is a folder"),
        ([QUrl("https://example.com/cat.png")], "not a file on this computer"),
    ]
    for urls, expected in cases:
        drop_urls(window.canvas.viewport(), urls)
        assert expected in window.toast.label.text(), expected
        assert window.toast.kind == "error"
        assert window.document.image is before
        assert window.document.undo_stack.count() == depth


def test_dropped_png_with_settings_offers_restore(qtbot, window, tmp_path):
    from engine.history import write_png

    request = GenerationRequest(prompt="a lighthouse at dusk", seed=1234, steps=33, sampler="DDIM")
    path = write_png(Image.new("RGB", (64, 64), "navy"), tmp_path / "made.png", request.to_dict())
    drop_files(window.canvas.viewport(), [path])
    assert window.toast.action.isVisible() and window.toast.action.text() == "Restore settings"
    assert window.settings.get("prompt") == ""  # nothing changes until the user asks
    window.toast.action.click()
    assert window.settings.get("prompt") == "a lighthouse at dusk"
    assert (window.settings.get("seed"), window.settings.get("steps")) == (1234, 33)
    assert window.settings.get("seed_mode") == "fixed"
    assert window.prompt_panel.sampler.currentText() == "DDIM"


def test_outpaint_extends_and_masks_the_new_area(qtbot, window, fake, image_file):
    window.images.open_path(image_file)
    assert window.images.extend("right", 30)  # rounds down to 24
    assert window.document.size() == (120, 64) and window.settings.mode is Mode.INPAINT
    window.generation.generate()
    qtbot.waitUntil(lambda: bool(fake.requests), timeout=5000)
    request = fake.requests[-1]
    mask = Image.open(request.mask_image)
    assert mask.getpixel((110, 10)) == 255 and mask.getpixel((10, 10)) == 0
    assert (request.width, request.height) == (120, 64)
    qtbot.waitUntil(lambda: not window.job.busy, timeout=5000)


def test_paste_and_copy(qtbot, window):
    from PySide6.QtGui import QGuiApplication

    image = QImage(40, 24, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.green)
    QGuiApplication.clipboard().setImage(image)
    window.paste_action.trigger()
    assert window.document.size() == (40, 24) and window.settings.mode is Mode.IMG2IMG
    QGuiApplication.clipboard().clear()
    window.copy_action.trigger()
    assert QGuiApplication.clipboard().image().size() == image.size()
    QGuiApplication.clipboard().setText("https://example.com/a.png")
    window.paste_action.trigger()
    assert "not a file on this computer" in window.toast.label.text()


def test_gallery_actions(qtbot, window, fake, tmp_path):
    window.settings.set("prompt", "a green frog")
    window.generation.generate()
    qtbot.waitUntil(lambda: len(window.gallery.entries) == 1, timeout=5000)
    entry = window.gallery.entries[0]
    menu = window.gallery_panel.menu_for(entry)
    texts = [a.text() for a in menu.actions() if a.text()]
    assert texts[:4] == ["Open on canvas", "Use as init image", "Reuse settings", "Vary (subtle)"]
    window.settings.set("prompt", "something else")
    window.gallery_panel.reuse_requested.emit(entry)
    assert window.settings.get("prompt") == "a green frog"
    window.gallery_panel.init_requested.emit(entry)
    assert window.settings.mode is Mode.IMG2IMG
    window.gallery_panel.vary_requested.emit(entry)
    qtbot.waitUntil(lambda: len(window.gallery.entries) == 2, timeout=5000)
    shown = window.gallery_panel.list
    ids = [shown.item(r).data(Qt.ItemDataRole.UserRole) for r in range(shown.count())]
    assert ids == [e.id for e in window.gallery.store.entries()]  # newest first, as stored
    varied = fake.requests[-1]
    assert varied.mode is Mode.IMG2IMG and varied.strength == 0.35
    assert varied.init_image == str(entry.image_path) and varied.prompt == "a green frog"
    assert window.save_entry(entry, tmp_path / "copy.png")
    assert (tmp_path / "copy.png").read_bytes() == entry.image_path.read_bytes()
    window.gallery_panel.delete_requested.emit(entry)
    assert len(window.gallery.entries) == 1 and not entry.image_path.exists()
    assert window.gallery_panel.list.count() == 1


def test_layout_settings_and_gallery_survive_a_restart(qtbot, make_window):
    first = make_window()
    first.resize(780, 560)  # within the offscreen screen, which restoreGeometry clamps to
    first.gallery_dock.hide()
    first.settings.set("prompt", "remember me")
    first.settings.set("steps", 31)
    first.generation.generate()
    qtbot.waitUntil(lambda: len(first.gallery.entries) == 1, timeout=5000)
    first.close()
    second = make_window()
    assert second.settings.get("prompt") == "remember me"
    assert second.prompt_panel.prompt.toPlainText() == "remember me"
    assert second.settings.get("steps") == 31
    assert (second.size().width(), second.size().height()) == (780, 560)
    assert second.gallery_dock.isHidden()
    assert len(second.gallery.entries) == 1


def test_quit_during_a_generation_cancels_and_joins(qtbot, make_window, fake_engine_holder):
    window = make_window(Script(steps=50, step_seconds=0.05))
    window.generation.generate()
    qtbot.waitUntil(lambda: window.job.step >= 1, timeout=5000)
    window.close()
    engine = fake_engine_holder[-1]
    assert not engine._thread.is_alive()


def test_tools_menu_hosts_or_says_not_available(qtbot, window):
    opened = window.open_tool("desktop.widgets.no_such_tool", "NoSuchDialog")
    assert opened is None and "not available" in window.toast.label.text()
    menu_texts = [a.text() for m in window.menuBar().actions() for a in m.menu().actions()]
    assert "Train a model…" in menu_texts and "Evaluate images…" in menu_texts


def test_upscale_action_submits_an_upscale_request(qtbot, window, fake):
    from engine.api import UpscaleRequest

    window.generation.generate()
    qtbot.waitUntil(lambda: len(window.gallery.entries) == 1, timeout=5000)
    entry = window.gallery.entries[0]
    texts = [a.text() for a in window.gallery_panel.menu_for(entry).actions()]
    assert "Upscale…" in texts
    dialog = window.upscale_entry(entry)
    assert dialog.model.currentData() == "" and "Lanczos" in dialog.model.currentText()
    dialog.factor.setCurrentIndex(dialog.factor.findData(4.0))
    assert dialog.result_size.text().endswith(f"{entry.width * 4} × {entry.height * 4}")
    dialog.accept()
    qtbot.waitUntil(lambda: len(window.gallery.entries) == 2, timeout=5000)
    request = fake.requests[-1]
    assert isinstance(request, UpscaleRequest)
    assert (request.image, request.model, request.scale) == (str(entry.image_path), "", 4.0)


def test_hosted_tools_open_and_their_jobs_stay_theirs(qtbot, window, fake):
    from desktop.menus import HOSTED_TOOLS

    for _text, module, class_name in HOSTED_TOOLS:
        tool = window.open_tool(module, class_name)
        assert tool is not None, window.toast.label.text()
        assert tool.isVisible() and tool.isWindow()
    port = window.bridge.port()
    events = []
    port.subscribe(events.append)
    job = port.submit(GenerationRequest(prompt="a tool's job", width=32, height=32))
    qtbot.waitUntil(lambda: any(type(e).__name__ == "Result" for e in events), timeout=5000)
    qtbot.wait(50)
    port.unsubscribe(events.append)
    assert [e.job_id for e in events] == [job] * len(events)
    assert window.gallery.entries == [] and not window.job.busy  # not the main window's job
    window.generation.generate()  # and the main window's own jobs still flow
    qtbot.waitUntil(lambda: len(window.gallery.entries) == 1, timeout=5000)


def test_a1111_png_settings_are_offered_too(qtbot, window, tmp_path):
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text(
        "parameters",
        "a watercolor fox\nNegative prompt: blurry\n"
        "Steps: 28, Sampler: DPM++ 2M Karras, CFG scale: 6.5, Seed: 77, Size: 512x768",
    )
    path = tmp_path / "a1111.png"
    Image.new("RGB", (64, 96), "orange").save(path, pnginfo=info)
    drop_files(window.canvas.viewport(), [path])
    assert "from AUTOMATIC1111" in window.toast.label.text()
    window.toast.action.click()  # another app's settings: reviewed first
    from desktop.widgets.imported_settings import ImportedSettingsDialog

    window.findChildren(ImportedSettingsDialog)[-1].findChild(
        QPushButton, "restoreSettings"
    ).click()
    s = window.settings
    assert (s.get("prompt"), s.get("negative_prompt"), s.get("steps")) == (
        "a watercolor fox",
        "blurry",
        28,
    )
    assert (s.get("sampler"), s.get("guidance_scale"), s.get("seed")) == (
        "DPM++ 2M Karras",
        6.5,
        77,
    )


def test_dropping_a_model_file_on_the_window_imports_it(qtbot, window, tmp_path):
    from engine.library.records import ModelLibrary as Records

    from .test_dialogs import _lora_file

    lora = _lora_file(tmp_path / "watercolor.safetensors")
    drop_files(window.canvas.viewport(), [lora])
    assert Records().by_path(lora) is not None
    assert window.library.find(str(lora.resolve())) is not None
    assert not window.document.has_image()  # a model is not a picture


def test_mode_stays_as_chosen_through_a_restart(qtbot, make_window, image_file):
    first = make_window()
    first.images.open_path(image_file)
    first.settings.set("mode", Mode.INPAINT.value)
    first.close()
    second = make_window()
    assert second.settings.mode is Mode.INPAINT
    assert second.prompt_panel.mode.currentData() == Mode.INPAINT.value


def test_a_built_in_brings_the_guidance_and_steps_it_was_tuned_at(qtbot, window):
    """The built-ins are measured at guidance 3 (their cards); the panel's default of 7 is for
    Stable Diffusion. First launch and choosing a built-in in the list both set the model's."""
    panel = window.prompt_panel
    qtbot.waitUntil(lambda: window.settings.get("guidance_scale") == 3.0, timeout=5000)
    assert panel.guidance.value() == 3.0 and window.settings.get("steps") == 20
    window.settings.set("guidance_scale", 9.0)  # the user's own choice stays until a new model
    dalle = panel.model.findData("builtin:emoji-dalle")
    assert dalle >= 0
    panel.model.setCurrentIndex(dalle)
    assert window.settings.get("model") == "builtin:emoji-dalle"
    assert window.settings.get("guidance_scale") == 3.0
    assert window.settings.get("sampler") == "top-k"
    window.settings.set("guidance_scale", 9.0)
    window.settings.set("model", "builtin:emoji-ldm")  # not a choice in the list: kept
    assert window.settings.get("guidance_scale") == 9.0


def test_the_concepts_control_shows_only_for_a_model_that_has_known_concepts(qtbot, window):
    panel = window.prompt_panel
    shipped = json.loads(
        (ROOT / "resources" / "models" / "emoji-ldm" / "config.json").read_text(encoding="utf-8")
    )["concept_strength"]  # the built-in's own tuned strength (0.8 since stop 29)
    qtbot.waitUntil(lambda: window.settings.get("concept_strength") == shipped, timeout=5000)
    assert panel._form.isRowVisible(panel.concepts)
    assert panel.concepts.value() == round(shipped * 100)
    panel.concepts.setValue(0)
    request = window.settings.to_request()
    assert request.extras["concept_strength"] == 0.0
    panel.model.setCurrentIndex(panel.model.findData("builtin:emoji-dalle"))  # none shipped
    assert window.settings.get("concept_strength") is None
    assert not panel._form.isRowVisible(panel.concepts)
    assert "concept_strength" not in window.settings.to_request().extras
    saved = window.settings.to_json()
    window.settings.set("concept_strength", 0.3)
    window.settings.load_json(saved.replace('"concept_strength": null', '"concept_strength": 0.8'))
    assert window.settings.get("concept_strength") == 0.8


def test_the_autoguidance_control_shows_only_for_a_model_with_a_weaker_copy(qtbot, window):
    panel = window.prompt_panel
    shipped = json.loads(
        (ROOT / "resources" / "models" / "emoji-ldm" / "config.json").read_text(encoding="utf-8")
    )["autoguidance"]  # emoji-ldm ships guide-unet.safetensors (stop 32)
    qtbot.waitUntil(lambda: window.settings.get("autoguidance") == shipped, timeout=5000)
    assert panel._form.isRowVisible(panel.autoguidance)
    assert panel.autoguidance.value() == shipped
    panel.autoguidance.setValue(1.0)
    assert window.settings.to_request().extras["autoguidance"] == 1.0
    panel.model.setCurrentIndex(panel.model.findData("builtin:emoji-dalle"))  # no weak copy
    assert window.settings.get("autoguidance") is None
    assert not panel._form.isRowVisible(panel.autoguidance)
    assert "autoguidance" not in window.settings.to_request().extras
    saved = window.settings.to_json()
    for stored, expected in (("2.5", 2.5), ("9", None), ('"x"', None)):
        window.settings.set("autoguidance", None)
        window.settings.load_json(
            saved.replace('"autoguidance": null', f'"autoguidance": {stored}')
        )
        assert window.settings.get("autoguidance") == expected
