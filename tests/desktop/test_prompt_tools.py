"""Wildcards (`__colour__` from a text file, drawn from the seed) and recent prompts."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from engine.errors import InputError
from engine.paths import user_data_dir
from engine.prompting.wildcards import available, expand, wildcards_dir

COLOURS = ["red", "green", "blue", "golden", "purple", "teal", "orange", "pink"]


@pytest.fixture
def wildcard_files():
    folder = wildcards_dir()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "colour.txt").write_text("# colours\n" + "\n".join(COLOURS) + "\n\n")
    (folder / "animal.txt").write_text("__colour__ cat\n__colour__ owl\nfox\n")
    return folder


def test_the_same_seed_gives_the_same_prompt_every_time(wildcard_files):
    template = "a __colour__ apple next to a __animal__"
    first = expand(template, 1234)
    assert all(expand(template, 1234) == first for _ in range(20))
    assert "__" not in first and first.startswith("a ")
    drawn = {expand("__colour__", seed) for seed in range(200)}
    assert drawn == set(COLOURS)  # every choice is reachable, comments and blanks are not
    assert available() == ["animal", "colour"]


def test_a_missing_wildcard_file_says_what_to_create(wildcard_files):
    with pytest.raises(InputError, match=r"create .*wildcards.*season\.txt"):
        expand("a __season__ forest", 1)
    assert expand("__../secrets__ stays text", 1) == "__../secrets__ stays text"


def test_generating_sends_the_expanded_prompt_and_keeps_the_template(
    qtbot, window, fake, wildcard_files
):
    window.settings.set("prompt", "a __colour__ rocket")
    window.settings.set("seed", 77)
    window.settings.set("seed_mode", "fixed")
    window.generation.generate()
    qtbot.waitUntil(lambda: len(window.gallery.entries) == 1, timeout=5000)
    request = fake.requests[-1]
    assert request.prompt == expand("a __colour__ rocket", 77) != "a __colour__ rocket"
    assert request.extras["prompt_template"] == "a __colour__ rocket"
    entry = window.gallery.entries[0]
    assert entry.prompt.startswith(request.prompt)
    window.settings.set("prompt", "something else")
    window.reuse_entry(entry)
    assert window.settings.get("prompt") == "a __colour__ rocket"
    assert window.settings.to_request().prompt == request.prompt  # same seed, same choice
    assert window.gallery.store.search("rocket")  # found by the template's words too


def test_recent_prompts_are_one_key_away_and_kept(qtbot, make_window):
    window = make_window()
    for prompt in ("a red apple", "a cat face", "a rocket"):
        window.settings.set("prompt", prompt)
        window.generation.generate()
        qtbot.waitUntil(lambda: not window.job.busy, timeout=5000)
    box = window.prompt_panel.prompt
    window.settings.set("prompt", "half typed")
    box.setFocus()
    qtbot.keyClick(box, Qt.Key.Key_Up, Qt.KeyboardModifier.ControlModifier)
    assert box.toPlainText() == "a rocket" and window.settings.get("prompt") == "a rocket"
    qtbot.keyClick(box, Qt.Key.Key_Up, Qt.KeyboardModifier.ControlModifier)
    assert box.toPlainText() == "a cat face"
    qtbot.keyClick(box, Qt.Key.Key_Down, Qt.KeyboardModifier.ControlModifier)
    qtbot.keyClick(box, Qt.Key.Key_Down, Qt.KeyboardModifier.ControlModifier)
    assert box.toPlainText() == "half typed"  # the draft comes back
    window.prompt_recall._fill_menu()
    menu = [a.text() for a in window.prompt_recall.button.menu().actions()]
    assert menu == ["a rocket", "a cat face", "a red apple"]
    window.close()
    again = make_window()
    assert again.prompt_history.items()[:3] == ["a rocket", "a cat face", "a red apple"]
    assert (user_data_dir() / "wildcards").exists() is False
