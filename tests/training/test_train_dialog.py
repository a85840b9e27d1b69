"""The Train dialog with the real engine and a tiny VAE: live progress, loss curve, sample grid
whose pictures open on the canvas, a clear message for bad input, and stop."""

from __future__ import annotations

import pytest
import torch
from gan_vae_tiny import write_pictures

from desktop.widgets.train_dialog import TrainDialog


@pytest.fixture
def dialog(qtbot, engine):
    torch.set_num_threads(1)
    widget = TrainDialog(engine)
    qtbot.addWidget(widget)
    widget.show()
    yield widget
    widget.reject()


def fill(dialog, data, out, steps: int) -> None:
    dialog.data_edit.setText(str(data))
    dialog.out_edit.setText(str(out))
    dialog.family_combo.setCurrentIndex(dialog.family_combo.findData("vae"))
    dialog.resolution_combo.setCurrentIndex(dialog.resolution_combo.findData(16))
    dialog.batch_spin.setValue(4)
    dialog.steps_spin.setValue(steps)
    dialog.sample_spin.setValue(2)
    dialog.settings_edit.setText("width=8 latent_dim=4")


def test_training_live_in_the_dialog_and_opening_a_sample(dialog, qtbot, tmp_path):
    fill(dialog, write_pictures(tmp_path / "pics", count=4), tmp_path / "model", steps=4)
    assert not dialog.data_b_edit.isVisibleTo(dialog)  # only CycleGAN needs a second folder
    with qtbot.waitSignal(dialog.training_finished, timeout=120_000) as finished:
        qtbot.mouseClick(dialog.start_button, qtbot_left())
    outcome, info = finished.args
    assert outcome == "result" and info["steps"] == 4
    assert len(dialog.curve.values) == 4
    assert dialog.progress_bar.value() == 4
    assert "saved in" in dialog.status_label.text()
    assert dialog.start_button.isEnabled() and not dialog.cancel_button.isEnabled()
    grid = dialog.samples
    assert grid.grid is not None and grid.pixmap() is not None
    pixmap = grid.pixmap()
    left = (grid.width() - pixmap.width()) // 2
    top = (grid.height() - pixmap.height()) // 2
    with qtbot.waitSignal(dialog.open_image, timeout=5000) as opened:
        # the centre of the first picture in the grid (2 px gutter, 16 px pictures)
        qtbot.mouseClick(
            grid, qtbot_left(), pos=point(left + 10 * grid.scale, top + 10 * grid.scale)
        )
    assert opened.args[0].size == (16, 16)


def test_bad_settings_are_explained_and_nothing_is_submitted(dialog, qtbot, tmp_path):
    # the suggested output folder is a fresh one in the models folder, following the family
    assert dialog.out_edit.text().endswith("models/my-dcgan")
    dialog.family_combo.setCurrentIndex(dialog.family_combo.findData("nvae"))
    assert dialog.out_edit.text().endswith("models/my-nvae")
    dialog.out_edit.setText(str(tmp_path / "model"))
    qtbot.mouseClick(dialog.start_button, qtbot_left())
    assert "Choose a folder of images" in dialog.status_label.text()
    assert dialog.job_id is None and dialog.start_button.isEnabled()
    fill(dialog, tmp_path / "missing", tmp_path / "model", steps=2)
    with qtbot.waitSignal(dialog.training_finished, timeout=60_000) as finished:
        qtbot.mouseClick(dialog.start_button, qtbot_left())
    assert finished.args[0] == "failed"
    assert "does not exist" in dialog.status_label.text()


def test_stop_saves_a_checkpoint(dialog, qtbot, tmp_path):
    fill(dialog, write_pictures(tmp_path / "pics", count=4), tmp_path / "model", steps=100000)
    qtbot.mouseClick(dialog.start_button, qtbot_left())
    qtbot.waitUntil(lambda: len(dialog.curve.values) >= 2, timeout=60_000)
    with qtbot.waitSignal(dialog.training_finished, timeout=60_000) as finished:
        qtbot.mouseClick(dialog.cancel_button, qtbot_left())
    assert finished.args[0] == "cancelled"
    assert "Resume" in dialog.status_label.text()
    assert (tmp_path / "model" / "checkpoint" / "state.json").is_file()


def qtbot_left():
    from PySide6.QtCore import Qt

    return Qt.MouseButton.LeftButton


def point(x: int, y: int):
    from PySide6.QtCore import QPoint

    return QPoint(int(x), int(y))


def test_training_on_the_built_in_emoji_renders_the_set_first(dialog, qtbot, tmp_path):
    from engine.datasets import emoji

    assert not emoji.is_rendered(16)
    fill(dialog, "builtin:emoji", tmp_path / "emoji-vae", steps=2)
    seen = []
    dialog.progress_bar.valueChanged.connect(lambda v: dialog.rendering and seen.append(v))
    with qtbot.waitSignal(dialog.training_finished, timeout=120_000) as finished:
        dialog.start()
        assert dialog.rendering and not dialog.start_button.isEnabled()
    assert finished.args[0] == "result", dialog.status_label.text()
    assert emoji.is_rendered(16) and len(emoji.load_rendered(None, 16).names) == 3174
    assert len(seen) > 10 and seen == sorted(seen)  # the render showed its progress


def test_stopping_the_emoji_render_writes_nothing(dialog, qtbot, tmp_path):
    from engine.datasets import emoji

    fill(dialog, "builtin:emoji", tmp_path / "emoji-vae", steps=2)
    dialog.start()
    qtbot.waitUntil(lambda: dialog.progress_bar.value() > 0, timeout=10_000)
    dialog.cancel_button.click()
    assert not dialog.rendering and dialog.start_button.isEnabled()
    assert not emoji.is_rendered(16) and dialog.job_id is None


def test_the_dialog_trains_a_dalle_model_from_captioned_pictures(dialog, qtbot, tmp_path):
    import json

    from dalle_tiny import TINY_TOKENIZER, TINY_TRANSFORMER, write_captioned

    index = dialog.family_combo.findData("dalle")
    assert index >= 0 and "DALL-E" in dialog.family_combo.itemText(index)
    fill(dialog, write_captioned(tmp_path / "pics"), tmp_path / "model", steps=4)
    dialog.family_combo.setCurrentIndex(index)
    dialog.flip_check.setChecked(False)
    compact = lambda value: json.dumps(value, separators=(",", ":"))  # noqa: E731
    dialog.settings_edit.setText(
        f"tokenizer={compact(TINY_TOKENIZER)} transformer={compact(TINY_TRANSFORMER)} "
        "tokenizer_steps=2 tokenizer_crop=0 warmup_steps=1"
    )
    with qtbot.waitSignal(dialog.training_finished, timeout=120_000) as finished:
        qtbot.mouseClick(dialog.start_button, qtbot_left())
    outcome, info = finished.args
    assert outcome == "result", dialog.status_label.text()
    assert info["steps"] == 4 and len(dialog.curve.values) == 4
    assert dialog.samples.grid is not None  # step 2: reconstructions; step 4: sampled pictures
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert config["family"] == "dalle" and config["tokenizer"]["channels"] == [8, 16]
