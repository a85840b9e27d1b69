"""The Control dock's region layers and hires group make requests the real engine runs: the
window sends to the scriptable fake engine (no model code on the GUI thread), then the very
request it sent runs on the real engine with a tiny SD 1.x model built in the test."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from engine.api import RuntimeOptions
from engine.events import Result
from tests.desktop.control_helpers import _drag, _generate


@pytest.fixture(scope="module")
def tiny_sd1(tmp_path_factory):
    import torch

    from tests.helpers.tiny_sd import build_sd1

    torch.set_num_threads(1)
    return build_sd1(tmp_path_factory.mktemp("steer-model") / "tiny-sd1")


def test_a_painted_region_and_the_hires_group_run_on_the_real_engine(qtbot, window, fake, tiny_sd1):
    from desktop.control_wiring import choose_tool
    from engine.services import Services
    from engine.worker import Engine

    settings = window.settings
    for key, value in {"model": str(tiny_sd1), "width": 128, "height": 128, "steps": 3}.items():
        settings.set(key, value)
    settings.set("prompt", "a house on a hill")
    section = window.control_panel.region_section
    qtbot.mouseClick(section.add, Qt.MouseButton.LeftButton)  # a blank canvas, region tool
    assert window.document.size() == (128, 128)
    region = window.control.regions.regions[0]
    QTest.keyClicks(section.prompt_edits[region.id], "a deep blue lake")
    window.canvas.set_brush_size(40)
    choose_tool(window, "region")
    _drag(qtbot, window.canvas, [(96, 10), (96, 60), (96, 118)])  # down the right side
    hires = window.control_panel.hires_section
    hires.setChecked(True)
    hires.scale.setValue(2.0)
    hires.strength.setValue(0.5)
    request = _generate(qtbot, window, fake)
    assert request.hires is not None and request.hires.scale == 2.0
    assert [r.prompt for r in request.regions] == ["a deep blue lake"]

    runnable = request.replace(runtime=RuntimeOptions(device="cpu", precision="fp32"))
    engine = Engine(services=Services())
    try:
        steered = engine.run(runnable, timeout=300)
        plain = engine.run(runnable.replace(regions=()), timeout=300)
    finally:
        assert engine.shutdown(timeout=60)
    assert isinstance(steered, Result), getattr(steered, "message", steered)
    assert isinstance(plain, Result), getattr(plain, "message", plain)
    assert steered.images[0].size == (128, 128)
    assert steered.info["hires_first_pass"] == "64x64"
    change = np.abs(
        np.asarray(steered.images[0]).astype(np.int16) - np.asarray(plain.images[0]).astype(int)
    ).mean(axis=2)
    assert change[:, 80:].mean() > change[:, :32].mean()  # more where the region was painted


def test_the_hires_group_says_what_both_passes_make(qtbot, window):
    hires = window.control_panel.hires_section
    window.settings.set("width", 1024)
    window.settings.set("height", 768)
    assert hires.sizes.isHidden()  # off: nothing to say
    hires.setChecked(True)
    hires.scale.setValue(2.0)
    assert not hires.sizes.isHidden()
    assert hires.sizes.text() == "First pass 512×384, then refined at 1024×768."
    window.settings.set("width", 96)
    assert "Too small to sample" in hires.sizes.text()
    assert hires.upscaler.findData("lanczos") >= 0  # a plain resize needs no model
