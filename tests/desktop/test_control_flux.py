"""The Control panel with a FLUX.1 control model (Canny / Depth dev) chosen: one unit, no
ControlNet, weight or range to set, the other sections off; the request it sends; and a plain
FLUX.1 model, which cannot be steered (fake engine)."""

from __future__ import annotations

from PySide6.QtCore import Qt

from desktop.state.models import ModelInfo
from engine.api_control import ControlUnit
from tests.desktop.control_helpers import _generate


def _choose(window, tmp_path, name: str, variant: str) -> str:
    path = str(tmp_path / f"{name}.safetensors")
    info = ModelInfo(
        reference=path, name=name, kind="checkpoint", base="flux", variant=variant, path=path
    )
    window.library.models.append(info)
    window.settings.set("model", path)
    window.settings.set("width", 64)
    window.settings.set("height", 64)
    window.settings.set("prompt", "a house on a hill")
    return path


def test_a_flux_control_model_takes_one_unit_without_a_controlnet(
    qtbot, window, fake, tmp_path, image_file
):
    _choose(window, tmp_path, "flux1-canny-dev", "control-canny")
    panel, control = window.control_panel, window.control
    assert panel.enabled_for_model and panel.reads_control == "FLUX.1 Canny"
    assert panel.disabled_note.isVisibleTo(panel)
    assert "reads one control image itself" in panel.disabled_note.text()
    assert not panel.empty_note.isVisibleTo(panel)  # no "put a ControlNet in ..." here
    assert not panel.image_prompts.isEnabled() and not panel.hires_section.isEnabled()
    qtbot.mouseClick(panel.add_unit, Qt.MouseButton.LeftButton)
    card = panel.cards[0]
    assert not card.model.isVisibleTo(card) and not card.weight.isVisibleTo(card)
    assert not card.guess.isVisibleTo(card) and card.preprocessor.isVisibleTo(card)
    assert not panel.add_unit.isEnabled()  # one control image for this model
    control.use_file(0, str(image_file))
    control.set_unit(0, preprocessor="canny", weight=0.5, end=0.6)  # left from an SD model
    control.add_image_prompt(str(image_file))
    request = _generate(qtbot, window, fake)
    assert request.control == (ControlUnit(image=str(image_file), model="", preprocessor="canny"),)
    assert request.image_prompts == ()  # not used by this model: kept in the panel, not sent
    assert control.image_prompts


def test_a_plain_flux_model_cannot_be_steered_and_says_so(window, tmp_path):
    _choose(window, tmp_path, "flux1-dev", "dev")
    panel = window.control_panel
    assert not panel.enabled_for_model and panel.reads_control == ""
    assert "cannot be steered" in panel.disabled_note.text()
    caps = window.library.capabilities(window.settings.get("model"))
    assert (caps.reads_control, caps.guidance) == ("", True)
