"""The gallery's Vary (subtle / strong), Upscale ×2 / ×4 and Hires fix, from the context menu and
the toolbar, and a dropped Easel PNG restoring the Control panel."""

from __future__ import annotations

import pytest
from PIL import Image
from PySide6.QtCore import Qt

from engine.api import GenerationRequest, Mode, UpscaleRequest
from engine.api_control import ControlUnit, HiresFix
from tests.desktop import control_helpers
from tests.desktop.conftest import drop_files
from tests.desktop.control_helpers import CONTROLNET, _generate

sd_window = control_helpers.sd_window  # the fixture, shared


@pytest.fixture
def made(qtbot, sd_window, fake):
    """One result in the gallery, made with seed 42."""
    sd_window.settings.set("seed", 42)
    sd_window.settings.set("seed_mode", "fixed")
    _generate(qtbot, sd_window, fake)
    qtbot.waitUntil(lambda: len(sd_window.gallery.entries) == 1, timeout=5000)
    return sd_window.gallery.entries[0]


def _menu_action(window, entry, text):
    menu = window.gallery_panel.menu_for(entry)
    return next(a for a in menu.actions() if a.text() == text)


def _run(qtbot, window, fake, trigger):
    count = len(fake.requests)
    trigger()
    qtbot.waitUntil(lambda: len(fake.requests) == count + 1, timeout=5000)
    qtbot.waitUntil(lambda: not window.job.busy, timeout=5000)
    return fake.requests[-1]


def test_the_menu_offers_vary_upscale_and_hires(sd_window, made):
    texts = [a.text() for a in sd_window.gallery_panel.menu_for(made).actions() if a.text()]
    for wanted in ("Vary (subtle)", "Vary (strong)", "Upscale ×2", "Upscale ×4", "Hires fix"):
        assert wanted in texts
    assert texts.index("Vary (subtle)") < texts.index("Vary (strong)") < texts.index("Hires fix")


@pytest.mark.parametrize(("text", "strength", "kind"), [
    ("Vary (subtle)", 0.35, "vary-subtle"),
    ("Vary (strong)", 0.7, "vary-strong"),
])  # fmt: skip
def test_vary_from_the_menu(qtbot, sd_window, fake, made, text, strength, kind):
    request = _run(qtbot, sd_window, fake, _menu_action(sd_window, made, text).trigger)
    assert request.mode is Mode.IMG2IMG and request.strength == strength
    assert request.init_image == str(made.image_path)
    assert request.prompt == "a house on a hill" and request.seed != 42
    assert request.extras["variation_of"]["kind"] == kind
    assert request.extras["variation_of"]["entry_id"] == made.id
    qtbot.waitUntil(lambda: len(sd_window.gallery.entries) == 2, timeout=5000)
    varied = sd_window.gallery.entries[0]
    assert varied.metadata["extras"]["variation_of"]["entry_id"] == made.id  # in the metadata
    assert "Vary (" in sd_window.gallery_panel.list.item(0).toolTip()


@pytest.mark.parametrize("factor", [2, 4])
def test_upscale_by_a_factor_without_an_upscaler_is_lanczos(qtbot, sd_window, fake, made, factor):
    action = _menu_action(sd_window, made, f"Upscale ×{factor}")
    request = _run(qtbot, sd_window, fake, action.trigger)
    assert isinstance(request, UpscaleRequest)
    assert (request.image, request.model, request.scale) == (str(made.image_path), "", factor)


def test_upscale_uses_the_librarys_upscaler(qtbot, sd_window, fake, made, monkeypatch):
    from desktop.state.models import ModelInfo

    upscaler = ModelInfo("/models/4x-ultrasharp.pth", "4x-ultrasharp", kind="upscaler")
    monkeypatch.setattr(sd_window.library, "models", [*sd_window.library.models, upscaler])
    request = _run(
        qtbot, sd_window, fake, lambda: sd_window.gallery_panel.upscale_x4_requested.emit(made)
    )
    assert request.model == "/models/4x-ultrasharp.pth" and request.scale == 4


def test_hires_fix_from_the_toolbar_uses_the_panels_settings(qtbot, sd_window, fake, made):
    sd_window.control.set_hires(scale=1.5, strength=0.3, steps=8)  # not enabled: still used
    panel = sd_window.gallery_panel
    assert not panel.toolbar.isEnabled()  # nothing selected yet
    panel.select_entry(made.id)
    assert panel.toolbar.isEnabled()
    hires = next(a for a in panel.toolbar.actions() if a.objectName() == "hires_requested")
    request = _run(qtbot, sd_window, fake, hires.trigger)
    assert request.mode is Mode.TXT2IMG and request.seed == 42  # the same first pass
    assert (request.width, request.height) == (96, 96)
    assert request.hires == HiresFix(scale=1.5, strength=0.3, upscaler="latent", steps=8)
    assert request.extras["variation_of"]["kind"] == "hires"


def test_toolbar_vary_buttons_act_on_the_selected_result(qtbot, sd_window, fake, made):
    panel = sd_window.gallery_panel
    panel.select_entry(made.id)
    names = [a.objectName() for a in panel.toolbar.actions()]
    assert names == ["vary_requested", "vary_strong_requested", "upscale_x2_requested",
                     "upscale_x4_requested", "hires_requested"]  # fmt: skip
    strong = panel.toolbar.actions()[1]
    request = _run(qtbot, sd_window, fake, strong.trigger)
    assert request.strength == 0.7


def test_a_dropped_easel_png_restores_the_control_panel(qtbot, sd_window, tmp_path, image_file):
    from engine.metadata.writer import save_png_with_metadata

    request = GenerationRequest(
        prompt="a castle",
        model=sd_window.settings.get("model"),
        width=64,
        height=64,
        control=(ControlUnit(image=str(image_file), model=CONTROLNET, preprocessor="lineart"),),
        hires=HiresFix(scale=2.0, strength=0.55),
    )
    path = save_png_with_metadata(
        Image.new("RGB", (64, 64), (9, 9, 9)), tmp_path / "castle.png", request.to_dict()
    )
    assert drop_files(sd_window.canvas, [path])
    qtbot.waitUntil(lambda: "carries the settings" in sd_window.toast.label.text(), timeout=3000)
    qtbot.mouseClick(sd_window.toast.action, Qt.MouseButton.LeftButton)
    control = sd_window.control
    assert sd_window.settings.get("prompt") == "a castle"
    assert [(u.model, u.preprocessor, u.image_path) for u in control.units] == [
        (CONTROLNET, "lineart", str(image_file))
    ]
    assert control.hires.enabled and control.hires.strength == 0.55
    assert len(sd_window.control_panel.cards) == 1
