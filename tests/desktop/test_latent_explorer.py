"""The latent explorer: the request each mode builds, clear messages for bad choices, a
clickable result grid (fake engine), and a real DCGAN interpolation end to end."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, Qt

from desktop.testing.fake_engine import FakeEngine, Script
from desktop.widgets.latent_explorer import LatentExplorer


@pytest.fixture
def fake():
    engine = FakeEngine(default=Script(steps=2))
    yield engine
    assert engine.shutdown(timeout=10)


def make_dialog(qtbot, engine) -> LatentExplorer:
    dialog = LatentExplorer(engine)
    qtbot.addWidget(dialog)
    dialog.show()
    return dialog


def choose(dialog: LatentExplorer, reference: str, mode: str) -> None:
    index = next(
        i for i in range(dialog.model_combo.count())
        if dialog.model_combo.itemData(i)[0] == reference
    )  # fmt: skip
    dialog.model_combo.setCurrentIndex(index)
    dialog.mode_combo.setCurrentIndex(dialog.mode_combo.findData(mode))


def modes(dialog: LatentExplorer) -> list[str]:
    return [dialog.mode_combo.itemData(i) for i in range(dialog.mode_combo.count())]


def click_cell(qtbot, dialog: LatentExplorer, column: int, row: int):
    """Click the middle of cell (column, row) of the shown grid; returns the emitted picture."""
    view = dialog.grid_view
    layout = view.grid.info["easel_grid"]
    pixmap = view.pixmap()
    left = (view.width() - pixmap.width()) // 2
    top = (view.height() - pixmap.height()) // 2
    pad, width, height = layout["pad"], layout["cell_width"], layout["cell_height"]
    x = pad + column * (width + pad) + width // 2
    y = pad + row * (height + pad) + height // 2
    with qtbot.waitSignal(dialog.open_image, timeout=5000) as opened:
        qtbot.mouseClick(
            view, Qt.MouseButton.LeftButton, pos=QPoint(left + x * view.scale, top + y * view.scale)
        )
    return opened.args[0]


def test_modes_requests_messages_and_clicking_a_cell(qtbot, fake, tmp_path):
    dialog = make_dialog(qtbot, fake)
    choose(dialog, "builtin:emoji-beta-vae", "traverse")
    assert modes(dialog) == ["traverse", "interpolate_images", "samples"]
    assert dialog.dimension_spin.maximum() == 63  # latent_dim 64 from the folder's config
    assert dialog.dimension_spin.isVisibleTo(dialog)
    assert not dialog.to_seed_spin.isVisibleTo(dialog)

    # bad choices: a missing second picture, an unreadable one; nothing is submitted
    dialog.mode_combo.setCurrentIndex(dialog.mode_combo.findData("interpolate_images"))
    qtbot.mouseClick(dialog.explore_button, Qt.MouseButton.LeftButton)
    assert "Choose the second picture" in dialog.status_label.text()
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a picture")
    dialog.image_b_edit.setText(str(broken))
    qtbot.mouseClick(dialog.explore_button, Qt.MouseButton.LeftButton)
    assert "not a picture Easel can read" in dialog.status_label.text()
    assert not dialog.add_model_folder(tmp_path)  # no config.json: not a native model
    assert "not a native GAN or VAE" in dialog.status_label.text()
    assert fake.requests == []

    # DCGAN: seed interpolation only (no style mixing), with its class names
    choose(dialog, "builtin:emoji-dcgan", "interpolate_seeds")
    assert modes(dialog) == ["interpolate_seeds", "samples"]
    assert not dialog.mix_layer_spin.isVisibleTo(dialog)
    dialog.seed_spin.setValue(3)
    dialog.to_seed_spin.setValue(11)
    dialog.count_spin.setValue(6)
    dialog.columns_spin.setValue(3)
    dialog.class_combo.setCurrentIndex(dialog.class_combo.findText("Animals & Nature"))
    with qtbot.waitSignal(dialog.explore_finished, timeout=10_000) as finished:
        qtbot.mouseClick(dialog.explore_button, Qt.MouseButton.LeftButton)
    assert finished.args == ["result"]
    request = fake.requests[-1]
    assert request.model == "builtin:emoji-dcgan" and request.seed == 3
    assert request.batch_size == 6 and (request.width, request.height) == (64, 64)
    assert request.extras == {"interpolate_to_seed": 11, "class_label": 1}
    assert dialog.grid_view.grid.info["easel_grid"]["columns"] == 3
    assert "6 pictures" in dialog.status_label.text()
    # the fake colours batch images in a cycle of 4: cell (1, 1) is image 4, like image 0
    picture = click_cell(qtbot, dialog, 1, 1)
    assert picture.size == (64, 64)
    assert picture.tobytes() == fake_result_image(fake, 4).tobytes()

    # a mode the family lacks (a stale choice) is explained, not submitted
    dialog.mode_combo.addItem("Mix the styles of two seeds", "style_mix")
    dialog.mode_combo.setCurrentIndex(dialog.mode_combo.count() - 1)
    qtbot.mouseClick(dialog.explore_button, Qt.MouseButton.LeftButton)
    assert "cannot 'mix the styles of two seeds'" in dialog.status_label.text()
    assert len(fake.requests) == 1
    dialog.reject()


def explore_with_real_engine(qtbot, dialog: LatentExplorer) -> list:
    """Click Explore and wait for the job to end; the outcome signal's arguments."""
    with qtbot.waitSignal(dialog.explore_finished, timeout=60_000) as finished:
        qtbot.mouseClick(dialog.explore_button, Qt.MouseButton.LeftButton)
    return finished.args


def fake_result_image(fake: FakeEngine, index: int):
    from desktop.testing.fake_engine import _image, _shift

    return _image(fake.requests[-1], _shift(fake.default.colour, index), 1.0)


def test_real_dcgan_and_beta_vae_end_to_end(qtbot, engine, tmp_path):
    import torch

    torch.set_num_threads(1)
    dialog = make_dialog(qtbot, engine)
    choose(dialog, "builtin:emoji-dcgan", "interpolate_seeds")
    dialog.seed_spin.setValue(5)
    dialog.to_seed_spin.setValue(42)
    dialog.count_spin.setValue(8)
    dialog.columns_spin.setValue(4)
    assert explore_with_real_engine(qtbot, dialog) == ["result"], dialog.status_label.text()
    grid = dialog.grid_view.grid
    assert grid.info["easel_grid"] == {
        "columns": 4, "rows": 2, "count": 8, "cell_width": 64, "cell_height": 64, "pad": 2,
    }  # fmt: skip
    assert dialog.grab().save(str(tmp_path / "latent.png"))  # renders offscreen
    first, last = click_cell(qtbot, dialog, 0, 0), click_cell(qtbot, dialog, 3, 1)
    assert first.size == last.size == (64, 64)
    assert first.tobytes() != last.tobytes()  # the walk moved from one seed to the other
    assert dialog.progress_bar.value() == dialog.progress_bar.maximum()

    # the beta-VAE: traverse one latent dimension of a picture, then walk to a second picture
    picture_a, picture_b = tmp_path / "a.png", tmp_path / "b.png"
    first.save(picture_a)
    last.save(picture_b)
    choose(dialog, "builtin:emoji-beta-vae", "traverse")
    dialog.image_a_edit.setText(str(picture_a))
    dialog.dimension_spin.setValue(7)
    dialog.count_spin.setValue(5)
    dialog.columns_spin.setValue(5)
    for mode in ("traverse", "interpolate_images"):
        dialog.mode_combo.setCurrentIndex(dialog.mode_combo.findData(mode))
        dialog.image_b_edit.setText(str(picture_b))
        assert explore_with_real_engine(qtbot, dialog) == ["result"], dialog.status_label.text()
        layout = dialog.grid_view.grid.info["easel_grid"]
        assert (layout["count"], layout["cell_width"]) == (5, 32)
        view = dialog.grid_view  # the whole grid is shown, scaled up to fit the view
        assert view.pixmap().width() <= view.width() and view.scale >= 2
        ends = click_cell(qtbot, dialog, 0, 0), click_cell(qtbot, dialog, 4, 0)
        assert ends[0].tobytes() != ends[1].tobytes()
    dialog.reject()


def test_real_stylegan_folder_style_mixing(qtbot, engine, tmp_path, monkeypatch):
    """A native folder browsed to (a tiny random StyleGAN): style mixing and truncation."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "families"))
    from gan_vae_tiny import save_random_model

    folder = save_random_model("stylegan", tmp_path / "my-stylegan")
    dialog = make_dialog(qtbot, engine)
    assert dialog.add_model_folder(folder)
    assert modes(dialog) == ["interpolate_seeds", "style_mix", "samples"]
    dialog.mode_combo.setCurrentIndex(dialog.mode_combo.findData("style_mix"))
    assert dialog.mix_layer_spin.isVisibleTo(dialog) and not dialog.class_combo.isVisibleTo(dialog)
    dialog.mix_layer_spin.setValue(1)
    dialog.to_seed_spin.setValue(9)
    dialog.count_spin.setValue(3)
    assert explore_with_real_engine(qtbot, dialog) == ["result"], dialog.status_label.text()
    assert dialog.grid_view.grid.info["easel_grid"]["count"] == 3
    assert click_cell(qtbot, dialog, 2, 0).size == (16, 16)
    dialog.reject()


def test_main_window_opens_it_and_a_clicked_picture_lands_on_the_canvas(qtbot, window):
    explorer = window.open_tool("desktop.widgets.latent_explorer", "LatentExplorer")
    assert explorer is not None and explorer.isVisible(), window.toast.label.text()
    choose(explorer, "builtin:emoji-dcgan", "samples")
    with qtbot.waitSignal(explorer.explore_finished, timeout=10_000):
        qtbot.mouseClick(explorer.explore_button, Qt.MouseButton.LeftButton)
    click_cell(qtbot, explorer, 2, 0)
    assert window.document.has_image() and window.document.size() == (64, 64)
    explorer.reject()


def test_cancel_stops_the_job_and_the_dialog_can_explore_again(qtbot, fake):
    dialog = make_dialog(qtbot, fake)
    choose(dialog, "builtin:emoji-dcgan", "samples")
    fake.queue_script(steps=4, pause_at=2)
    qtbot.mouseClick(dialog.explore_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(fake.paused.is_set, timeout=5000)
    qtbot.waitUntil(lambda: dialog.progress_bar.value() == 1, timeout=5000)
    assert dialog.cancel_button.isEnabled() and not dialog.explore_button.isEnabled()
    with qtbot.waitSignal(dialog.explore_finished, timeout=5000) as finished:
        qtbot.mouseClick(dialog.cancel_button, Qt.MouseButton.LeftButton)
    assert finished.args == ["cancelled"] and dialog.status_label.text() == "Cancelled."
    assert dialog.explore_button.isEnabled() and dialog.grid_view.grid is None
    dialog.reject()


def test_traverse_starts_on_a_dimension_that_varies_and_fills_the_panel(qtbot, engine):
    import numpy as np
    import torch

    torch.set_num_threads(1)
    dialog = make_dialog(qtbot, engine)
    dialog.resize(900, 640)
    choose(dialog, "builtin:emoji-beta-vae", "traverse")
    assert dialog.dimension_spin.value() == -1
    assert dialog.dimension_spin.text() == "The one that varies most"

    def spread() -> float:
        assert explore_with_real_engine(qtbot, dialog) == ["result"], dialog.status_label.text()
        ends = click_cell(qtbot, dialog, 0, 0), click_cell(qtbot, dialog, 7, 0)
        return float(np.abs(np.asarray(ends[0], float) - np.asarray(ends[1], float)).mean())

    chosen = spread()
    view = dialog.grid_view
    shown = view.pixmap()
    # 8 pictures of 32 px scaled up to the panel, not left at 1x in a large empty panel
    assert shown.width() >= 0.9 * view.width() or shown.height() >= 0.9 * view.height()
    assert view.scale > 1.4
    dialog.dimension_spin.setValue(0)
    assert chosen > spread()  # dimension 0 changes the picture less
    dialog.reject()
