"""The Control panel's image prompts end to end: the library's IP-Adapters offered, a dropped
reference and its weight sent, and the request the panel makes run by the real engine on a tiny
SD 1.x model with a tiny IP-Adapter and image encoder from the library."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PySide6.QtWidgets import QComboBox, QDoubleSpinBox

from engine.api_control import ImagePrompt
from engine.events import Result
from tests.desktop.conftest import drop_files
from tests.desktop.control_helpers import _generate


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from tests.helpers.tiny_control import build_image_encoder, build_ip_adapter
    from tests.helpers.tiny_sd import build_sd1

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("tiny-ip-desktop")
    model = build_sd1(root / "tiny-sd1")
    adapter = build_ip_adapter(model, root / "ip" / "ip-adapter-tiny.safetensors")
    build_image_encoder(root / "ip" / "image_encoder")
    return {"model": model, "adapter": adapter, "encoder": root / "ip" / "image_encoder"}


@pytest.fixture
def library_window(window, tiny):
    """The window on the tiny model, the adapter and its encoder in the user's models folder."""
    from engine.library.scan import scan_library
    from engine.paths import models_dir

    folder = models_dir() / "ipadapter"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(tiny["adapter"], folder / tiny["adapter"].name)
    shutil.copytree(tiny["encoder"], models_dir() / "clip_vision" / "vit-tiny")
    scan_library(include_hf_cache=False)
    window.library.refresh()
    window.settings.set("model", str(tiny["model"]))
    window.settings.set("width", 64)
    window.settings.set("height", 64)
    window.settings.set("steps", 3)
    window.settings.set("prompt", "a red apple")
    return window


def test_an_empty_library_says_where_to_put_an_ip_adapter(window):
    from engine.paths import models_dir

    section = window.control_panel.image_prompts
    assert section.empty_note.isVisibleTo(window.control_panel)
    assert not section.adapter.isVisibleTo(window.control_panel)
    text = section.empty_note.text().replace("\u200b", "")
    assert str(models_dir() / "ipadapter") in text and str(models_dir() / "clip_vision") in text


def test_the_panel_makes_a_request_the_engine_runs(qtbot, library_window, fake, tiny, image_file):
    from engine.services import Services
    from engine.worker import Engine

    window = library_window
    section = window.control_panel.image_prompts
    assert not section.empty_note.isVisibleTo(window.control_panel)
    names = [section.adapter.itemText(i) for i in range(section.adapter.count())]
    assert names == ["Automatic", "ip-adapter-tiny"]
    assert drop_files(section, [image_file])
    section.adapter.setCurrentIndex(1)
    row = section.rows.itemAt(0).widget()
    assert row.findChildren(QComboBox) == []  # one adapter chooser for the section
    row.findChild(QDoubleSpinBox).setValue(0.9)
    request = _generate(qtbot, window, fake)
    adapter = section.adapter.itemData(1)
    assert request.image_prompts == (ImagePrompt(image=str(image_file), weight=0.9, model=adapter),)
    # the same request on the real engine (CPU, one thread): it runs and the picture steers
    from engine.api import RuntimeOptions

    runtime = RuntimeOptions(device="cpu", precision="fp32", cpu_threads=1)
    engine = Engine(services=Services())
    try:
        steered = engine.run(request.replace(runtime=runtime), timeout=300)
        assert isinstance(steered, Result), getattr(steered, "message", steered)
        assert steered.info["image_encoder"] == "vit-tiny"
        automatic = request.replace(
            runtime=runtime, image_prompts=(request.image_prompts[0].replace(model=""),)
        )
        again = engine.run(automatic, timeout=300)  # the library's only one: the same pixels
        plain = engine.run(request.replace(runtime=runtime, image_prompts=()), timeout=300)
    finally:
        assert engine.shutdown(timeout=60)
    first, second = (np.asarray(r.images[0], np.int16) for r in (steered, again))
    assert np.array_equal(first, second)
    assert np.abs(first - np.asarray(plain.images[0], np.int16)).mean() > 1.0


def test_reuse_settings_restores_the_chosen_adapter(qtbot, library_window, image_file):
    from engine.api import GenerationRequest

    window = library_window
    section = window.control_panel.image_prompts
    adapter = section.adapter.itemData(1)
    request = GenerationRequest(
        prompt="x",
        model=window.settings.get("model"),
        image_prompts=(ImagePrompt(image=str(image_file), weight=0.4, model=adapter),),
    )
    window.control.apply_request(request)
    assert section.adapter.currentData() == adapter
    assert window.control.image_prompts[0].model == adapter
    section.adapter.setCurrentIndex(0)  # Automatic for every reference
    assert window.control.image_prompts[0].model == ""
