"""Regional prompts: coloured mask layers painted on the canvas, listed with prompt and weight
in the Control panel, and sent as `Region`s."""

from __future__ import annotations

import numpy as np
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from tests.desktop import control_helpers
from tests.desktop.control_helpers import _drag, _generate

sd_window = control_helpers.sd_window  # the fixture, shared


def _paint_region(qtbot, window, points):
    window.canvas.set_brush_size(10)
    from desktop.control_wiring import choose_tool

    choose_tool(window, "region")
    _drag(qtbot, window.canvas, points)


def test_two_regions_painted_on_the_canvas_are_sent_with_their_prompts(qtbot, sd_window, fake):
    window = sd_window
    section = window.control_panel.region_section
    qtbot.mouseClick(section.add, Qt.MouseButton.LeftButton)  # blank canvas, region tool
    assert window.document.size() == (64, 64) and window.canvas.tool == "region"
    first = window.control.regions.regions[0]
    QTest.keyClicks(section.prompt_edits[first.id], "a red barn")
    _paint_region(qtbot, window, [(8, 8), (24, 8)])  # top left
    qtbot.mouseClick(section.add, Qt.MouseButton.LeftButton)
    second = window.control.regions.regions[1]
    assert second.colour != first.colour  # picked automatically, distinct
    QTest.keyClicks(section.prompt_edits[second.id], "a blue lake")
    _paint_region(qtbot, window, [(40, 56), (56, 56)])  # bottom right
    assert window.control.regions.active_id == second.id
    request = _generate(qtbot, window, fake)
    assert [(r.prompt, r.weight) for r in request.regions] == [
        ("a red barn", 1.0),
        ("a blue lake", 1.0),
    ]
    top, bottom = (np.asarray(Image.open(r.mask).convert("L")) for r in request.regions)
    assert top.shape == bottom.shape == (64, 64)
    assert top[8, 10:22].min() == 255 and top[56, :].max() == 0
    assert bottom[56, 42:54].min() == 255 and bottom[8, :].max() == 0
    assert set(np.unique(top)) <= {0, 255}  # a clean mask


def test_each_region_is_drawn_in_its_colour_over_the_picture(qtbot, sd_window):
    window = sd_window
    window.control_panel.region_section.add.click()
    _paint_region(qtbot, window, [(20, 20), (40, 20)])
    region = window.control.regions.regions[0]
    item = window.region_overlay.items[region.id]
    overlay = item.pixmap().toImage()
    painted = overlay.pixelColor(30, 20)
    assert (painted.red(), painted.green(), painted.blue()) == (
        region.colour.red(),
        region.colour.green(),
        region.colour.blue(),
    )
    assert overlay.pixelColor(30, 50).alpha() == 0 and 0 < item.opacity() < 1
    window.show_regions_action.trigger()
    assert not item.isVisible()
    window.control.regions.remove(region.id)
    assert window.region_overlay.items == {}


def test_a_region_stroke_is_one_undo_step(qtbot, sd_window):
    window = sd_window
    window.control_panel.region_section.add.click()
    _paint_region(qtbot, window, [(10, 30), (50, 30)])
    region = window.control.regions.regions[0]
    assert not region.is_empty()
    assert window.document.undo_stack.undoText() == "Paint region"
    window.undo_action.trigger()
    assert region.is_empty()
    window.redo_action.trigger()
    assert not region.is_empty()
    window.canvas.set_tool("region-eraser")
    _drag(qtbot, window.canvas, [(0, 30), (63, 30)])
    assert region.is_empty() and window.document.undo_stack.undoText() == "Erase region"


def test_an_empty_region_is_left_out_with_a_note(qtbot, sd_window, fake, monkeypatch):
    window = sd_window
    shown = []
    monkeypatch.setattr(window, "show_message", lambda text, kind="info": shown.append(text))
    regions = window.control.regions
    window.control_panel.region_section.add.click()
    regions.set_prompt(regions.regions[0].id, "never painted")
    request = _generate(qtbot, window, fake)
    assert request.regions == ()
    assert "Region 1 has no painted area: it was not sent." in shown


def test_regions_follow_a_resized_picture_and_delete_from_the_list(qtbot, sd_window, fake):
    window = sd_window
    section = window.control_panel.region_section
    section.add.click()
    _paint_region(qtbot, window, [(8, 8), (56, 8)])
    window.document.resize(128, 96)
    region = window.control.regions.regions[0]
    assert (region.mask.width(), region.mask.height()) == (128, 96)
    window.settings.set("width", 128)
    window.settings.set("height", 96)
    request = _generate(qtbot, window, fake)
    assert Image.open(request.regions[0].mask).size == (128, 96)
    from PySide6.QtWidgets import QToolButton

    row = section.rows.itemAt(0).widget()
    delete = next(b for b in row.findChildren(QToolButton) if b.toolTip() == "Delete this region")
    qtbot.mouseClick(delete, Qt.MouseButton.LeftButton)
    assert window.control.regions.regions == []
    assert section.rows.count() == 0 and not section.paint.isEnabled()
