"""Training data: folders, classes, captions, unreadable files, batches and their resume state."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gan_vae_tiny import write_pictures
from PIL import Image

from engine.errors import InputError
from engine.training.data import BatchSampler, load_training_data


def test_corrupt_and_unreadable_files_are_skipped_and_counted(tmp_path):
    folder = write_pictures(tmp_path / "pics", count=3)
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    (folder / "truncated.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 10)
    (folder / "notes.md").write_text("not a picture, not even looked at")
    data = load_training_data(str(folder), 16)
    assert len(data) == 3
    assert data.images.shape == (3, 3, 16, 16) and data.images.dtype == torch.uint8
    assert sorted(s.split(":")[0] for s in data.skipped) == ["broken.png", "truncated.jpg"]
    assert data.labels is None and data.captions is None


def test_resize_and_centre_crop_keep_the_middle(tmp_path):
    folder = tmp_path / "wide"
    folder.mkdir()
    pixels = np.zeros((10, 30, 3), np.uint8)
    pixels[:, 10:20] = 255  # white middle third, black sides
    Image.fromarray(pixels).save(folder / "wide.png")
    data = load_training_data(str(folder), 10)
    assert data.images.shape == (1, 3, 10, 10)
    assert data.images.float().mean() > 240  # the crop is the white middle


def test_transparent_pictures_land_on_white(tmp_path):
    folder = tmp_path / "alpha"
    folder.mkdir()
    Image.new("RGBA", (8, 8), (0, 0, 0, 0)).save(folder / "clear.png")
    data = load_training_data(str(folder), 8)
    assert int(data.images.min()) == 255


def test_folders_with_nothing_usable_are_refused(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_training_data(str(tmp_path / "missing"), 16)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("hi")
    with pytest.raises(InputError, match="holds no pictures"):
        load_training_data(str(empty), 16)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.png").write_bytes(b"no")
    with pytest.raises(InputError, match="None of the 1 pictures"):
        load_training_data(str(broken), 16)
    with pytest.raises(InputError, match="Unknown built-in data set"):
        load_training_data("builtin:nope", 16)


def test_subfolders_are_classes_and_text_files_are_captions(tmp_path):
    write_pictures(tmp_path / "data" / "cats", count=2)
    write_pictures(tmp_path / "data" / "dogs", count=3, seed=1)
    (tmp_path / "data" / "dogs" / "picture_00.txt").write_text("a red dog\n")
    data = load_training_data(str(tmp_path / "data"), 16)
    assert data.classes == ["cats", "dogs"]
    assert data.labels.tolist() == [0, 0, 1, 1, 1]
    assert data.captions == ["", "", "a red dog", "", ""]


def test_batches_walk_whole_epochs_and_resume_exactly(tmp_path):
    data = load_training_data(str(write_pictures(tmp_path / "p", count=5)), 8)
    sampler = BatchSampler(data, 2, seed=3, device=torch.device("cpu"), flip=True)
    first_epoch = [sampler.next() for _ in range(2)]
    assert all(b.images.shape == (2, 3, 8, 8) for b in first_epoch)
    assert float(first_epoch[0].images.min()) >= -1 and float(first_epoch[0].images.max()) <= 1
    state = {k: v.clone() for k, v in sampler.state().items()}
    expected = [sampler.next().images for _ in range(4)]
    resumed = BatchSampler(data, 2, seed=999, device=torch.device("cpu"), flip=True)
    resumed.set_state(state)
    assert all(torch.equal(a, resumed.next().images) for a in expected)
    # without flips, one epoch of 5 pictures in batches of 5 is a permutation of the set
    plain = BatchSampler(data, 5, seed=0, device=torch.device("cpu"), flip=False)
    as_pixels = ((plain.next().images + 1) * 127.5).round().to(torch.uint8)
    key = sorted(tuple(im.flatten().tolist()) for im in as_pixels)
    assert key == sorted(tuple(im.flatten().tolist()) for im in data.images)


def test_a_set_too_big_for_memory_is_refused_before_decoding(tmp_path, monkeypatch):
    from engine.training import data as data_module

    folder = write_pictures(tmp_path / "pics", count=3)
    monkeypatch.setattr(data_module, "MAX_DATA_BYTES", 2 * 16 * 16 * 3)
    with pytest.raises(InputError, match="Use at most 2 pictures"):
        load_training_data(str(folder), 16)
