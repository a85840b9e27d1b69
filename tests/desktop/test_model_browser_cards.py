"""The model browser shows each model's card, a sample thumbnail and its hash."""

from __future__ import annotations

import pytest
from PIL import Image

from desktop.widgets.model_card import card_path, preview_path


def test_built_in_models_show_card_thumbnail_and_hash(qtbot, window):
    browser = window.show_model_browser()
    browser.select("builtin:emoji-ldm")
    card = browser.card_view.card.toPlainText()
    assert "emoji-ldm" in card and "MIT" in card  # what it makes and its licence
    assert not browser.card_view.picture.pixmap().isNull()  # the sample grid
    row = next(
        r for r in range(browser.model.rowCount())
        if browser.model.item(r, 0).data(0x0100) == "builtin:emoji-ldm"
    )  # fmt: skip
    assert not browser.model.item(row, 0).icon().isNull()  # a thumbnail in the table
    qtbot.waitUntil(lambda: browser.hash_text("builtin:emoji-ldm") not in ("", "—"), timeout=20_000)
    assert len(browser.hash_text("builtin:emoji-ldm")) == 10  # A1111's short hash
    shown = browser.hash_text("builtin:emoji-ldm")
    browser.refresh()  # the library rescanned: the rows are rebuilt from its records
    assert browser.hash_text("builtin:emoji-ldm") == shown  # the found hash stays
    assert browser.selected().reference == "builtin:emoji-ldm"  # so do the selection
    assert "emoji-ldm" in browser.card_view.card.toPlainText()  # and the card being read
    hashes = browser.hashes
    browser.reject()
    assert not hashes.busy


def test_a_single_file_finds_its_preview_and_card(tmp_path):
    model = tmp_path / "dreamshaper.safetensors"
    model.write_bytes(b"x")
    assert preview_path(model) is None and card_path(model) is None
    Image.new("RGB", (8, 8)).save(tmp_path / "dreamshaper.preview.png")
    (tmp_path / "dreamshaper.md").write_text("# Dreamshaper\nCreativeML OpenRAIL-M")
    assert preview_path(model).name == "dreamshaper.preview.png"
    assert card_path(model).name == "dreamshaper.md"


def test_hash_requests_that_arrive_while_the_worker_finishes_are_all_answered(qtbot, tmp_path):
    """A request that came just as the hash thread found its queue empty used to be left in the
    queue with no thread to take it (its hash column stayed blank; seen under load)."""
    import random
    import time

    from desktop.widgets.model_card import HashWorker

    files = []
    for i in range(120):
        path = tmp_path / f"model-{i}.safetensors"
        path.write_bytes(bytes([i]) * 64)
        files.append(path)
    worker = HashWorker()
    answered: dict[str, str] = {}
    worker.hashed.connect(answered.__setitem__)
    pause = random.Random(0)
    for i, path in enumerate(files):
        worker.request(f"model-{i}", str(path))
        time.sleep(pause.choice([0.0, 0.0001, 0.0005, 0.002]))  # land on the thread's exit
    qtbot.waitUntil(lambda: len(answered) == len(files), timeout=20_000)
    assert len(set(answered.values())) == len(files)  # each file's own hash
    worker.stop()


def test_a_cards_wide_picture_fits_the_card_and_a_small_one_keeps_its_size(qtbot, tmp_path):
    from types import SimpleNamespace

    from desktop.widgets.model_card import ModelCardView, _image_fragments

    folder = tmp_path / "model"
    (folder / "samples").mkdir(parents=True)
    Image.new("RGB", (900, 300), "red").save(folder / "samples" / "wide.png")
    Image.new("RGB", (40, 20), "blue").save(folder / "samples" / "small.png")
    (folder / "README.md").write_text(
        "# A model\n\n![grid](samples/wide.png)\n\n![dot](samples/small.png)\n"
    )
    view = ModelCardView()
    qtbot.addWidget(view)
    view.resize(420, 500)
    view.show()
    qtbot.waitExposed(view)
    view.show_model(SimpleNamespace(path=str(folder), name="A model", kind="native", base="ldm"))
    room = view.card.viewport().width()
    sizes = [(f.width(), f.height()) for _, _, f in _image_fragments(view.card.document())]
    assert sizes[0][0] <= room and sizes[0][1] == pytest.approx(sizes[0][0] / 3)  # shape kept
    assert sizes[1] == (40, 20)  # not enlarged
    assert view.card.document().size().width() <= room  # no sideways scrolling
    view.resize(700, 500)  # a wider card: the picture grows with it, up to its own size
    qtbot.waitUntil(lambda: _image_fragments(view.card.document())[0][2].width() > sizes[0][0])
