"""The Control panel on the fake engine: units, the sketch flow, image prompts, hires, the
disabled state for a model that cannot be steered, and restoring from a gallery item."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt

from desktop.state.control import SOURCE_CANVAS, SOURCE_FILE, SOURCE_SKETCH
from engine.api import GenerationRequest
from engine.api_control import MAX_CONTROL_UNITS, ControlUnit, HiresFix, ImagePrompt, Region
from tests.desktop import control_helpers
from tests.desktop.control_helpers import CONTROLNET, _drag, _generate

sd_window = control_helpers.sd_window  # the fixture, shared


def test_units_are_added_and_removed_up_to_the_limit(qtbot, sd_window):
    panel, control = sd_window.control_panel, sd_window.control
    for _ in range(MAX_CONTROL_UNITS):
        qtbot.mouseClick(panel.add_unit, Qt.MouseButton.LeftButton)
    assert len(control.units) == len(panel.cards) == MAX_CONTROL_UNITS
    assert not panel.add_unit.isEnabled() and "At most" in panel.add_unit.text()
    qtbot.mouseClick(panel.cards[1].remove, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(panel.cards) == MAX_CONTROL_UNITS - 1)
    assert len(control.units) == MAX_CONTROL_UNITS - 1 and panel.add_unit.isEnabled()
    assert [c.title.text() for c in panel.cards] == ["<b>Unit 1</b>", "<b>Unit 2</b>",
                                                     "<b>Unit 3</b>"]  # fmt: skip


def test_a_card_writes_its_fields_into_the_request(qtbot, sd_window, fake, image_file):
    control, panel = sd_window.control, sd_window.control_panel
    qtbot.mouseClick(panel.add_unit, Qt.MouseButton.LeftButton)
    card = panel.cards[0]
    control.set_unit(0, model=CONTROLNET)
    control.use_file(0, str(image_file))
    card.preprocessor.setCurrentIndex(card.preprocessor.findData("canny"))
    card.preprocessor.activated.emit(card.preprocessor.currentIndex())
    card.weight.setValue(0.8)
    card.start.setValue(0.1)
    card.end.setValue(0.75)
    card.guess.setChecked(True)
    assert card.source.currentData() == SOURCE_FILE and card.choose_file.isVisibleTo(card)
    request = _generate(qtbot, sd_window, fake)
    assert request.control == (
        ControlUnit(
            image=str(image_file),
            model=CONTROLNET,
            preprocessor="canny",
            weight=0.8,
            start=0.1,
            end=0.75,
            guess_mode=True,
        ),
    )


def test_start_past_end_pushes_the_end(qtbot, sd_window):
    qtbot.mouseClick(sd_window.control_panel.add_unit, Qt.MouseButton.LeftButton)
    card = sd_window.control_panel.cards[0]
    card.end.setValue(0.5)
    card.start.setValue(0.6)
    unit = sd_window.control.units[0]
    assert unit.start == 0.6 and unit.end == pytest.approx(0.65)


def test_drawing_a_scribble_and_pressing_generate_sends_the_strokes(qtbot, sd_window, fake):
    """The whole flow: add a unit (sketch, scribble), draw on the empty canvas, Generate."""
    window, control = sd_window, sd_window.control
    assert not window.document.has_image()
    qtbot.mouseClick(window.control_panel.add_unit, Qt.MouseButton.LeftButton)
    assert control.units[0].source == SOURCE_SKETCH
    assert control.units[0].preprocessor == "scribble"
    assert window.canvas.tool == "sketch" and window.document.size() == (64, 64)  # blank canvas
    control.set_unit(0, model=CONTROLNET)
    window.canvas.set_brush_size(6)
    _drag(qtbot, window.canvas, [(8, 32), (32, 32), (56, 32)])
    assert window.document.has_sketch()
    request = _generate(qtbot, window, fake)
    assert len(request.control) == 1
    unit = request.control[0]
    assert (unit.model, unit.preprocessor) == (CONTROLNET, "scribble")
    sent = np.asarray(Image.open(unit.image).convert("L"))
    assert sent.shape == (64, 64)
    assert sent[32, 10:54].min() > 200  # the stroke, white
    assert sent[5, :].max() < 30 and sent[60, :].max() < 30  # black where nothing was drawn
    # the thumbnail shows the same sketch
    card = window.control_panel.cards[0]

    def centre_lightness():
        thumb = card.thumbnail.pixmap().toImage()
        return thumb.pixelColor(thumb.width() // 2, thumb.height() // 2).lightness()

    qtbot.waitUntil(lambda: centre_lightness() > 200, timeout=2000)


def test_the_same_sketch_twice_is_one_file_kept_for_reuse(qtbot, sd_window, fake):
    control = sd_window.control
    sketch_unit(sd_window)
    _drag(qtbot, sd_window.canvas, [(10, 10), (50, 50)])
    first = _generate(qtbot, sd_window, fake).control[0].image
    second = _generate(qtbot, sd_window, fake).control[0].image
    assert first == second
    from pathlib import Path

    assert Path(first).is_file()  # still there after the job: the gallery's request names it
    assert len(control.units) == 1


def sketch_unit(window):
    from desktop.control_wiring import sketch_unit as add

    unit = add(window, model=CONTROLNET)
    assert unit is not None
    return unit


def test_an_empty_sketch_or_missing_model_is_one_clear_message(qtbot, sd_window, fake):
    control = sd_window.control
    control.add_unit(SOURCE_SKETCH)
    assert sd_window.generation.generate() is None
    assert "no ControlNet model" in sd_window.toast.label.text()
    control.set_unit(0, model=CONTROLNET)
    assert sd_window.generation.generate() is None
    assert "uses the sketch layer" in sd_window.toast.label.text()
    control.set_unit(0, source=SOURCE_FILE, image_path="/nowhere/edges.png")
    assert sd_window.generation.generate() is None
    assert "is missing: choose it again" in sd_window.toast.label.text()
    assert fake.requests == []  # nothing was submitted


def test_canvas_source_sends_the_picture(qtbot, sd_window, fake, image_file):
    assert sd_window.images.open_path(image_file)
    sd_window.settings.set("mode", "txt2img")
    sd_window.control.add_unit(SOURCE_CANVAS, model=CONTROLNET)
    assert sd_window.control.units[0].preprocessor == "canny"
    request = _generate(qtbot, sd_window, fake)
    sent = Image.open(request.control[0].image)
    assert sent.size == (96, 64)
    assert np.array_equal(np.asarray(sent.convert("RGB")), np.asarray(Image.open(image_file)))


def test_image_prompts_and_hires_go_into_the_request(qtbot, sd_window, fake, image_file):
    control = sd_window.control
    assert control.add_image_prompt(str(image_file), 0.5)
    assert control.add_image_prompt(str(image_file), 0.9)
    section = sd_window.control_panel.image_prompts
    assert section.rows.count() == 2
    control.set_image_prompt_weight(1, 0.7)
    hires = sd_window.control_panel.hires_section
    hires.setChecked(True)
    hires.scale.setValue(1.5)
    hires.strength.setValue(0.4)
    hires.steps.setValue(12)
    request = _generate(qtbot, sd_window, fake)
    assert request.image_prompts == (
        ImagePrompt(image=str(image_file), weight=0.5),
        ImagePrompt(image=str(image_file), weight=0.7),
    )
    assert request.hires == HiresFix(scale=1.5, strength=0.4, upscaler="latent", steps=12)
    assert request.control == () and request.regions == ()


def test_a_model_without_control_disables_the_panel_and_sends_nothing(qtbot, window, fake):
    panel = window.control_panel
    assert window.settings.get("model") == "builtin:emoji-ldm"
    assert not panel.body.isEnabled() and panel.disabled_note.isVisibleTo(panel)
    assert "emoji-ldm cannot be steered" in panel.disabled_note.text()
    assert "SD 1.x and SDXL" in panel.disabled_note.text()
    window.control.set_hires(enabled=True)
    request = _generate(qtbot, window, fake)
    assert request.hires is None  # kept in the panel, not sent
    window.settings.set("model", "/models/sd15.safetensors")
    assert panel.body.isEnabled() and not panel.disabled_note.isVisibleTo(panel)


def test_empty_library_says_where_to_put_a_controlnet(sd_window):
    from engine.paths import models_dir

    note = sd_window.control_panel.empty_note
    assert note.isVisibleTo(sd_window.control_panel)
    wanted = f"No ControlNet in your library: put one in {models_dir() / 'controlnet'}"
    assert note.text().replace("\u200b", "") == wanted


def test_reuse_settings_restores_units_prompts_regions_and_hires(
    qtbot, sd_window, fake, image_file
):
    """A gallery item made with steering brings it all back; a file that is gone is named
    and the rest of its settings kept."""
    from desktop.state.control import save_control_image
    from desktop.state.document import empty_mask

    mask = empty_mask(64, 64)
    mask.fill(255)
    mask_path = save_control_image(mask, "region")
    request = GenerationRequest(
        prompt="two cats",
        model=sd_window.settings.get("model"),
        width=64,
        height=64,
        control=(
            ControlUnit(image=str(image_file), model=CONTROLNET, preprocessor="canny", weight=0.7),
            ControlUnit(image="/gone/depth.png", model="/models/cn-depth", preprocessor="depth"),
        ),
        image_prompts=(ImagePrompt(image="/gone/ref.png", weight=0.4),),
        regions=(
            Region(mask=str(mask_path), prompt="a black cat", weight=1.5),
            Region(mask="/gone/mask.png", prompt="a white cat"),
        ),
        hires=HiresFix(scale=2.0, strength=0.45),
    )
    fake.default.colour = (10, 20, 30)
    window = sd_window
    window.generation._submit(request, [], show=True)
    qtbot.waitUntil(lambda: len(window.gallery.entries) == 1, timeout=5000)
    entry = window.gallery.entries[0]
    window.gallery_panel.reuse_requested.emit(entry)
    control = window.control
    assert [u.model for u in control.units] == [CONTROLNET, "/models/cn-depth"]
    assert control.units[0].image_path == str(image_file) and control.units[0].weight == 0.7
    assert control.units[1].image_path == "" and control.units[1].preprocessor == "depth"
    assert control.image_prompts == []
    assert [(r.prompt, r.weight) for r in control.regions.regions] == [
        ("a black cat", 1.5),
        ("a white cat", 1.0),
    ]
    assert not control.regions.regions[0].is_empty() and control.regions.regions[1].is_empty()
    assert control.hires.enabled and control.hires.strength == 0.45
    text = window.toast.label.text()
    assert "depth.png is missing" in text and "ref.png is missing" in text
    assert "mask.png is missing" in text
    assert len(window.control_panel.cards) == 2
    # an item made without steering clears the panel again
    plain = GenerationRequest(prompt="plain", model=request.model, width=64, height=64)
    window.generation._submit(plain, [], show=True)
    qtbot.waitUntil(lambda: len(window.gallery.entries) == 2, timeout=5000)
    window.gallery_panel.reuse_requested.emit(window.gallery.entries[0])
    assert control.is_empty()


def test_a_file_dropped_on_the_thumbnail_becomes_the_control_image(qtbot, sd_window, image_file):
    from tests.desktop.conftest import drop_files

    sd_window.control.add_unit(SOURCE_SKETCH, model=CONTROLNET)
    card = sd_window.control_panel.cards[0]
    assert drop_files(card.thumbnail, [image_file])
    unit = sd_window.control.units[0]
    assert (unit.source, unit.image_path) == (SOURCE_FILE, str(image_file))
    assert card.source.currentData() == SOURCE_FILE and card.source_note.text() == "photo.png"
    sd_window.control.set_unit(0, preprocessor="none")  # the picture is the map: shown as is
    thumb = card.thumbnail.pixmap().toImage()
    assert thumb.pixelColor(thumb.width() // 2, thumb.height() // 2).blue() == 120  # the photo
    notes = image_file.with_suffix(".txt")
    notes.write_text("not a picture")
    drop_files(card.thumbnail, [notes])  # passed on to the window, which says what it is
    assert sd_window.control.units[0].image_path == str(image_file)


def test_controlnets_in_the_library_are_the_only_choices(qtbot, sd_window, monkeypatch):
    from desktop.state.models import ModelInfo

    library = sd_window.library
    canny = ModelInfo("/lib/cn-canny", "cn-canny", kind="controlnet", base="sd15")
    checkpoint = ModelInfo("/lib/sd15.safetensors", "sd15", kind="checkpoint", base="sd15")
    monkeypatch.setattr(library, "models", [*library.models, canny, checkpoint])
    library.changed.emit()
    panel = sd_window.control_panel
    assert not panel.empty_note.isVisibleTo(panel)
    qtbot.mouseClick(panel.add_unit, Qt.MouseButton.LeftButton)
    card = panel.cards[0]
    choices = [card.model.itemData(i) for i in range(card.model.count())]
    assert choices == ["", "/lib/cn-canny"]  # "Choose a ControlNet…", then the ControlNets
    assert sd_window.control.units[0].model == "/lib/cn-canny"  # the only one: chosen
    monkeypatch.setattr(library, "models", [m for m in library.models if m is not canny])
    library.changed.emit()  # none left: every library model, and the empty state
    assert panel.empty_note.isVisibleTo(panel)
    choices = [card.model.itemData(i) for i in range(card.model.count())]
    assert "/lib/sd15.safetensors" in choices and "builtin:emoji-ldm" not in choices


@pytest.mark.parametrize("preprocessor", ["canny", "softedge", "lineart"])
def test_the_thumbnail_shows_the_control_map_the_controlnet_reads(
    qtbot, sd_window, tmp_path, preprocessor
):
    """A black square on white: the edge preprocessors' thumbnails are light on the square's
    outline and dark inside and around it (the map, not the source picture)."""
    from PIL import ImageDraw

    source = Image.new("RGB", (128, 128), "white")
    ImageDraw.Draw(source).rectangle((32, 32, 95, 95), fill="black")
    path = tmp_path / "square.png"
    source.save(path)
    sd_window.control.add_unit(SOURCE_FILE, model=CONTROLNET)
    sd_window.control.use_file(0, str(path))
    sd_window.control.set_unit(0, preprocessor=preprocessor)
    card = sd_window.control_panel.cards[0]
    thumb = card.thumbnail.pixmap().toImage()
    grey = np.array(
        [[thumb.pixelColor(x, y).value() for x in range(thumb.width())] for y in range(96)]
    )
    # the square spans 24..71 of the 96 px thumbnail: outline band vs its middle and the margin
    outline = np.concatenate([grey[24:72, 22:27].ravel(), grey[24:72, 69:74].ravel()])
    assert outline.max() > 120
    assert grey[40:56, 40:56].mean() < 40 and grey[2:12, 2:12].mean() < 40
