"""The Batch dialog with the real engine and the built-in model: it writes a spec from the
current settings, runs it on the engine's worker with progress, and the images land in the
output folder and the gallery; Stop then Run again goes on where it stopped."""

from __future__ import annotations

import json

import pytest
import torch

from desktop.state.gallery import GalleryState
from desktop.state.generation import GenerationSettings
from desktop.widgets.batch_dialog import SPEC_NAME, BatchDialog
from engine.api import RuntimeOptions
from engine.batch.manifest import read_rows
from engine.events import Progress


@pytest.fixture
def dialog(qtbot, engine):
    torch.set_num_threads(1)
    settings = GenerationSettings()
    for name, value in {"steps": 4, "sampler": "DDIM", "guidance_scale": 3.0, "width": 64,
                        "height": 64, "model": "builtin:emoji-ldm", "seed": 5,
                        "prompt": "a red apple"}.items():  # fmt: skip
        settings.set(name, value)
    widget = BatchDialog(
        engine, settings, gallery=GalleryState(), runtime=RuntimeOptions(cpu_threads=1)
    )
    qtbot.addWidget(widget)
    widget.show()
    yield widget
    widget.reject()


def test_a_batch_from_the_current_settings_lands_in_the_folder_and_gallery(dialog, qtbot, tmp_path):
    dialog.prompts_edit.setPlainText("a red apple\n\na rocket\n")
    dialog.count_spin.setValue(2)
    dialog.out_edit.setText(str(tmp_path / "out"))
    assert dialog.count_label.text() == "2 prompts × 2 seeds × 1 model = 4 images"
    added = []
    dialog.gallery.added.connect(added.extend)
    with qtbot.waitSignal(dialog.batch_finished, timeout=180_000) as finished:
        dialog.run_button.click()
        assert not dialog.run_button.isEnabled() and dialog.cancel_button.isEnabled()
    outcome, info = finished.args
    assert outcome == "result" and (info["done"], info["failed"]) == (4, 0)
    spec = [json.loads(line) for line in (tmp_path / "out" / SPEC_NAME).read_text().splitlines()]
    assert [(r["prompt"], r["seed"]) for r in spec] == [
        ("a red apple", 5), ("a red apple", 6), ("a rocket", 5), ("a rocket", 6),
    ]  # fmt: skip
    assert {(r["steps"], r["sampler"], r["width"]) for r in spec} == {(4, "DDIM", 64)}
    assert len([r for r in read_rows(tmp_path / "out") if r["status"] == "done"]) == 4
    assert len(added) == 4 and dialog.gallery.store.count() == 4  # in the gallery as made
    assert dialog.progress_bar.value() == 4
    assert dialog.preview.pixmap() is not None and not dialog.preview.pixmap().isNull()
    assert dialog.status_label.text().startswith("Done: 4 made")
    assert dialog.run_button.isEnabled()


def test_stop_then_run_again_goes_on_where_it_stopped(dialog, qtbot, tmp_path):
    dialog.prompts_edit.setPlainText("a rocket")
    dialog.count_spin.setValue(4)
    dialog.out_edit.setText(str(tmp_path / "out"))

    def stop_after_first(event) -> None:  # engine thread: only ask, the engine cancels
        if isinstance(event, Progress) and event.step == 1:
            dialog.engine.cancel(event.job_id)

    dialog.engine.subscribe(stop_after_first)
    with qtbot.waitSignal(dialog.batch_finished, timeout=180_000) as finished:
        dialog.start()
    dialog.engine.unsubscribe(stop_after_first)
    assert finished.args[0] == "cancelled" and "go on" in dialog.status_label.text()
    made = len(read_rows(tmp_path / "out"))
    assert 1 <= made < 4
    with qtbot.waitSignal(dialog.batch_finished, timeout=180_000) as finished:
        dialog.start()
    assert finished.args[1]["skipped"] == made and finished.args[1]["done"] == 4 - made


def test_nothing_to_make_is_explained(dialog):
    dialog.prompts_edit.setPlainText("  \n")
    dialog.start()
    assert dialog.job_id is None and "at least one prompt" in dialog.status_label.text()
    dialog.prompts_edit.setPlainText("apple")
    dialog.models_list.item(0).setCheckState(dialog.models_list.item(0).checkState().Unchecked)
    dialog.start()
    assert "Tick at least one model" in dialog.status_label.text()
