"""The emoji data set's engine side: captions, the fixed held-out split, the rendered cache and
`builtin:emoji` for the training runner (rendering itself needs QtSvg and lives in scripts/)."""

from __future__ import annotations

import numpy as np
import pytest

from engine.datasets import emoji
from engine.errors import InputError
from engine.training.data import load_training_data


def test_captions_and_skin_tone_groups():
    assert emoji.caption("red-apple") == "red apple"
    assert emoji.base_name("thumbs-up-medium-dark") == "thumbs-up"
    assert emoji.base_name("thumbs-up-light") == "thumbs-up"
    # variants of one emoji are always on the same side of the split
    assert emoji.is_held_out("thumbs-up-dark") == emoji.is_held_out("thumbs-up")


def test_the_held_out_split_is_fixed_and_about_a_tenth():
    names = [f"emoji-number-{i}" for i in range(2000)]
    held = [emoji.is_held_out(n) for n in names]
    assert 0.07 < sum(held) / len(held) < 0.13
    assert held == [emoji.is_held_out(n) for n in names]


def test_svg_document_wraps_the_body_in_the_icon_box():
    doc = emoji.svg_document('<path d="M0 0h32v32z"/>', 32)
    assert doc.startswith("<svg") and 'viewBox="0 0 32 32"' in doc and "<path" in doc


def test_a_missing_render_says_what_renders_it(tmp_path):
    with pytest.raises(InputError, match="Train dialog or with the `easel train` command"):
        emoji.load_rendered(tmp_path, 16)


def test_the_shipped_bodies_hold_the_whole_set():
    bodies, category_of, size = emoji.read_bundled()
    assert len(bodies) == 3174 and size == 32
    assert "<path" in bodies["red-apple"] and category_of["red-apple"] == "Food & Drink"
    assert emoji.bundled_path().stat().st_size < 1_000_000


def test_rendered_cache_round_trip_and_builtin_training_data(isolated_data_dir):
    names = ["red-apple", "cat-face", "rocket", "thumbs-up-dark", "thumbs-up"] + [
        f"filler-{i}" for i in range(40)
    ]
    images = np.random.default_rng(0).integers(0, 256, (len(names), 16, 16, 3), dtype=np.uint8)
    categories = ["Food & Drink", "Animals & Nature"] + ["Objects"] * (len(names) - 2)
    emoji.save_rendered(emoji.npz_path(None, 16), images, names, categories)

    loaded = emoji.load_rendered(None, 16)
    assert loaded.images.shape == images.shape and list(loaded.names) == names
    train = loaded.train()
    assert len(train.names) + len(loaded.test().names) == len(names)

    data = load_training_data("builtin:emoji", 16)
    assert tuple(data.images.shape[1:]) == (3, 16, 16) and len(data) == len(train.names)
    assert data.classes == sorted(set(train.categories.tolist()))
    assert "MIT" in data.licence and "Microsoft" in data.licence
    assert all(" " in c or c.isalpha() for c in data.captions)
