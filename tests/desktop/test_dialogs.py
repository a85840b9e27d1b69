"""Model browser and settings dialog, on the real model records and real preferences."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from safetensors.numpy import save_file

from engine.api import DeviceChoice, Offload
from engine.library.records import ModelLibrary as Records

from .conftest import drop_files


def _lora_file(path):
    """A small LoRA-shaped safetensors file (kohya key names, random weights)."""
    rng = np.random.default_rng(0)
    tensors = {}
    for block in range(2):
        stem = f"lora_unet_down_blocks_0_attentions_{block}_transformer_blocks_0_attn1_to_q"
        tensors[f"{stem}.lora_down.weight"] = rng.standard_normal((4, 320), dtype=np.float32)
        tensors[f"{stem}.lora_up.weight"] = rng.standard_normal((320, 4), dtype=np.float32)
        tensors[f"{stem}.alpha"] = np.array(4.0, dtype=np.float32)
    save_file(tensors, str(path))
    return path


def _rows(browser):
    proxy = browser.proxy
    return [
        [proxy.index(r, c).data() for c in range(proxy.columnCount())]
        for r in range(proxy.rowCount())
    ]


def test_model_browser_lists_imports_filters_and_removes(qtbot, window, tmp_path):
    browser = window.show_model_browser()
    names = [row[0] for row in _rows(browser)]
    assert "emoji-ldm (built-in)" in names
    lora = _lora_file(tmp_path / "tiny-style.safetensors")
    not_model = tmp_path / "notes.txt"
    not_model.write_text("x")
    messages = []
    browser.message.connect(messages.append)
    drop_files(browser, [lora, not_model])
    assert messages == [
        "'notes.txt' is not a .safetensors or .gguf model file.",
        "Imported 1 model.",
    ]
    record = Records().by_path(lora)
    assert record is not None  # identified from its content by the library's probe
    row = next(r for r in _rows(browser) if r[0] == "tiny-style")
    assert row[1] == record.kind and row[4] != "—"  # kind and size shown (3 is the variant)
    browser.search.setText("tiny")
    assert [r[0] for r in _rows(browser)] == ["tiny-style"]
    browser.search.setText("")
    browser.kind.setCurrentText(record.kind)
    assert all(r[1] == record.kind for r in _rows(browser))
    browser.kind.setCurrentText("All")
    browser.select(str(lora.resolve()))
    assert browser.selected().name == "tiny-style"
    browser.remove_selected()
    assert Records().by_path(lora) is None and lora.exists()  # forgotten, file kept
    browser.close()


def test_model_browser_refuses_to_remove_builtin(qtbot, window):
    browser = window.show_model_browser()
    browser.select("builtin:emoji-ldm")
    assert not browser.remove_button.isEnabled()
    browser.close()


def test_settings_apply_without_restart(qtbot, window, fake, tmp_path):
    dialog = window.show_settings()
    dialog.device.setCurrentIndex(dialog.device.findData(DeviceChoice.CPU))
    dialog.threads.setValue(1)
    dialog.attention_slicing.setChecked(True)
    dialog.offload.setCurrentIndex(dialog.offload.findData(Offload.MODEL))
    dialog.output.setText(str(tmp_path / "exports"))
    dialog.accept()
    window.generation.generate()
    qtbot.waitUntil(lambda: len(window.gallery.entries) == 1, timeout=5000)
    runtime = fake.requests[-1].runtime
    assert (runtime.device, runtime.cpu_threads, runtime.attention_slicing, runtime.offload) == (
        DeviceChoice.CPU,
        1,
        True,
        Offload.MODEL,
    )
    exported = list((tmp_path / "exports").glob("*.png"))
    assert [p.name for p in exported] == [window.gallery.entries[0].image_path.name]
    again = window.show_settings()
    assert again.device.currentData() == DeviceChoice.CPU and again.threads.value() == 1
    again.close()


def test_lora_picker_adds_weighted_lora_to_requests(qtbot, window, fake, tmp_path):
    lora = _lora_file(tmp_path / "ink.safetensors")
    window.prompt_panel.add_lora(str(lora), 0.6)
    # the built-in model takes no LoRA: refused here, with the engine's own message
    window.settings.set("model", "builtin:emoji-ldm")
    assert not window.prompt_panel.add_lora_button.isEnabled()
    assert window.generation.generate() is None and not fake.requests
    assert "emoji-ldm cannot use LoRAs" in window.toast.label.text()
    window.settings.set("model", str(tmp_path / "some-sd-model.safetensors"))
    assert window.prompt_panel.add_lora_button.isEnabled()
    assert window.prompt_panel.lora_table.rowCount() == 1
    spin = window.prompt_panel.lora_table.cellWidget(0, 1)
    spin.setValue(0.8)
    window.generation.generate()
    qtbot.waitUntil(lambda: bool(fake.requests), timeout=5000)
    loras = fake.requests[-1].loras
    assert [(x.path, x.weight) for x in loras] == [(str(lora), 0.8)]
    qtbot.waitUntil(lambda: not window.job.busy, timeout=5000)
    window.prompt_panel.lora_table.cellWidget(0, 2).click()
    assert window.settings.get("loras") == []


def test_size_presets_and_custom_multiples_of_eight(qtbot, window):
    panel = window.prompt_panel
    panel.size_preset.setCurrentText("Portrait 512x768")
    assert (window.settings.get("width"), window.settings.get("height")) == (512, 768)
    panel.width_box.setValue(300)
    panel.width_box.editingFinished.emit()
    assert window.settings.get("width") == 304 and panel.size_preset.currentText() == "Custom"
    panel.seed_mode.setCurrentIndex(panel.seed_mode.findData("fixed"))
    panel.seed.setValue(2**64 - 1)  # 64-bit seeds, every digit kept (no float on the way)
    assert window.settings.get("seed") == 2**64 - 1 and panel.seed.text() == str(2**64 - 1)
    panel.seed.clear()
    qtbot.keyClicks(panel.seed, "18446744073709551614")
    assert window.settings.get("seed") == 2**64 - 2
    qtbot.keyClicks(panel.seed, "9")  # a 21st digit is refused by the validator
    assert window.settings.get("seed") == 2**64 - 2
    window.settings.last_seed = 99
    qtbot.mouseClick(panel.reuse_seed, Qt.MouseButton.LeftButton)
    assert window.settings.get("seed") == 99 and panel.seed.value() == 99


def test_model_folders_from_settings_are_scanned_and_forgotten(qtbot, window, tmp_path):
    folder = tmp_path / "my-models"
    folder.mkdir()
    lora = _lora_file(folder / "pastel.safetensors")
    dialog = window.show_settings()
    dialog.folders.addItem(str(folder))
    dialog.accept()
    qtbot.waitUntil(lambda: window.library.find(str(lora.resolve())) is not None, timeout=10_000)
    assert [str(p) for p in Records().folders()] == [str(folder.resolve())]
    again = window.show_settings()
    assert [again.folders.item(i).text() for i in range(again.folders.count())] == [
        str(folder.resolve())
    ]
    again.folders.takeItem(0)
    again.accept()
    qtbot.waitUntil(lambda: window.library.find(str(lora.resolve())) is None, timeout=10_000)
    assert lora.exists()  # forgetting a folder never touches its files


def test_missing_model_folder_is_reported(qtbot, window, tmp_path):
    dialog = window.show_settings()
    dialog.folders.addItem(str(tmp_path / "nowhere"))
    dialog.accept()
    assert "is not a folder" in window.toast.label.text()
    qtbot.waitUntil(lambda: not window.library.scanning, timeout=10_000)


def test_which_models_need_the_stable_diffusion_stack(window, tmp_path):
    library = window.library
    assert not library.needs_diffusers("builtin:emoji-ldm")
    lora = _lora_file(tmp_path / "style.safetensors")
    library.import_file(str(lora))
    assert not library.needs_diffusers(str(lora.resolve()))  # a LoRA, known from its content
    assert library.needs_diffusers(str(tmp_path / "some-checkpoint.safetensors"))
    diffusers_folder = tmp_path / "sd-folder"
    diffusers_folder.mkdir()
    (diffusers_folder / "model_index.json").write_text("{}")
    native = tmp_path / "native"
    native.mkdir()
    (native / "config.json").write_text('{"family": "dcgan"}')
    assert library.needs_diffusers(str(diffusers_folder))
    assert not library.needs_diffusers(str(native))
