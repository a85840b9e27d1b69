"""Styles, prompt expansion, describe and interrogate in the main window, on the fake engine
(one end-to-end expansion on the real engine with the MiniLM retrieval)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialogButtonBox

from desktop.understanding import missing_model_message
from desktop.widgets.insight_dialog import InsightDialog
from desktop.widgets.settings_dialog import SettingsDialog
from desktop.widgets.style_picker import matches
from engine.api import CaptionRequest, ExpandPromptRequest, GenerationRequest, InterrogateRequest
from engine.prompting.styles import apply_style, find_style

EXPANDED = {
    "prompt": "cinematic film still of a red apple, golden hour, rule of thirds",
    "negative_prompt": "cartoon, flat lighting",
    "method": "retrieval",
    "style": "Cinematic",
}


def _idle(qtbot, window):
    qtbot.waitUntil(lambda: not window.job.busy, timeout=5000)


def _dialog_button(dialog: InsightDialog, text: str):
    buttons = dialog.findChild(QDialogButtonBox).buttons()
    return next(b for b in buttons if b.text() == text)


def _open_dialog(window) -> InsightDialog:
    return window.understanding.dialogs[-1]


# -- styles -------------------------------------------------------------------------------------
def test_style_is_applied_kept_in_history_and_reused(qtbot, window, fake):
    panel = window.prompt_panel
    assert len(panel.style_picker.names()) >= 50
    panel.style_picker._actions["Cinematic"].trigger()  # what clicking it in the menu does
    assert window.settings.get("style") == "Cinematic"
    assert "Cinematic" in panel.style_picker.text()
    assert find_style("Cinematic").preview in panel.style_picker.toolTip()
    window.settings.set("prompt", "a red apple")
    window.settings.set("negative_prompt", "blurry")
    window.generation.generate()
    _idle(qtbot, window)
    request = fake.requests[-1]
    assert isinstance(request, GenerationRequest)
    assert (request.prompt, request.negative_prompt) == apply_style(
        "Cinematic", "a red apple", "blurry"
    )
    assert request.prompt.startswith("cinematic film still of a red apple")
    assert request.extras["style"] == "Cinematic"
    # reuse settings: the user's own words come back with the style, not the styled prompt
    window.settings.set("prompt", "something else")
    window.settings.set("style", "")
    window.reuse_entry(window.gallery.entries[0])
    assert window.settings.get("prompt") == "a red apple"
    assert window.settings.get("negative_prompt") == "blurry"
    assert window.settings.get("style") == "Cinematic"


def test_no_style_sends_the_prompt_as_typed(qtbot, window, fake):
    window.settings.set("prompt", "a red apple")
    window.generation.generate()
    _idle(qtbot, window)
    assert fake.requests[-1].prompt == "a red apple"
    assert "style" not in fake.requests[-1].extras


def test_style_is_remembered_between_runs(qtbot, make_window):
    first = make_window()
    first.prompt_panel.style_picker._actions["Watercolor"].trigger()
    first.close()
    second = make_window()
    assert second.settings.get("style") == "Watercolor"
    assert "Watercolor" in second.prompt_panel.style_picker.text()


def test_style_search_lists_matching_styles(qtbot, window):
    picker = window.prompt_panel.style_picker
    found = picker.filter("noir")
    assert "Film Noir" in found
    assert all(matches(picker._styles[n], "noir") for n in found)
    assert len(found) < len(picker.names())
    assert picker.filter("zzzz-nothing") == []
    assert picker._no_match.isVisible()  # "No style matches"
    picker._found["Film Noir"].trigger()  # choosing a search result
    assert window.settings.get("style") == "Film Noir"
    assert picker.filter("") == []  # back to the categories


def test_style_menu_takes_typing_and_enter_picks(qtbot, window):
    picker = window.prompt_panel.style_picker
    picker.showPopup()
    qtbot.waitUntil(lambda: picker.search.hasFocus(), timeout=3000)
    qtbot.keyClicks(picker.search, "water")
    qtbot.keyClick(picker.search, Qt.Key.Key_Return)
    assert window.settings.get("style") == "Watercolor"
    assert not picker.menu().isVisible()


# -- expand ---------------------------------------------------------------------------------------
def test_expand_replaces_the_prompt_undoably(qtbot, window, fake):
    fake.queue_script(steps=2, extra_info=dict(EXPANDED))
    window.settings.set("prompt", "a red apple")
    window.settings.set("negative_prompt", "blurry")
    qtbot.mouseClick(window.prompt_panel.expand, Qt.MouseButton.LeftButton)
    assert window.job.busy  # progress bar and Cancel follow the job
    _idle(qtbot, window)
    request = fake.requests[-1]
    assert isinstance(request, ExpandPromptRequest)
    assert request.prompt == "a red apple"
    assert request.model == ""  # no language model chosen: the MiniLM retrieval
    assert window.settings.get("prompt") == EXPANDED["prompt"]
    assert window.settings.get("negative_prompt") == "blurry, cartoon, flat lighting"
    assert "Prompt expanded" in window.toast.label.text()
    assert window.toast.action.text() == "Undo"
    assert window.gallery.entries == []  # information only: nothing in the gallery
    window.toast.action.click()
    assert window.settings.get("prompt") == "a red apple"
    assert window.settings.get("negative_prompt") == "blurry"
    assert window.prompt_panel.expand.text() == "Expand"


def test_expand_with_a_chosen_style_adds_only_the_detail_words(qtbot, window, fake):
    info = dict(EXPANDED, keywords=["golden hour", "rule of thirds"])
    fake.queue_script(steps=1, extra_info=info)
    window.settings.set("style", "Watercolor")  # the user's style wins over the retrieved one
    window.settings.set("prompt", "a red apple")
    window.understanding.expand()
    _idle(qtbot, window)
    assert window.settings.get("prompt") == "a red apple, golden hour, rule of thirds"
    assert window.settings.get("negative_prompt") == ""
    assert window.toast.label.text() == "Prompt expanded."


def test_expansion_is_offered_when_the_prompt_changed_meanwhile(qtbot, window, fake):
    fake.queue_script(steps=2, pause_at=2, extra_info=dict(EXPANDED))
    window.settings.set("prompt", "a red apple")
    window.understanding.expand()
    qtbot.waitUntil(fake.paused.is_set, timeout=5000)
    window.prompt_panel.prompt.setPlainText("a green pear")
    fake.release()
    _idle(qtbot, window)
    assert window.settings.get("prompt") == "a green pear"  # the user's edit is kept
    assert window.toast.action.text() == "Use expansion"
    window.toast.action.click()
    assert window.settings.get("prompt") == EXPANDED["prompt"]


def test_expand_uses_the_language_model_folder_from_settings(qtbot, window, fake, tmp_path):
    window.preferences.set_understanding_folder("language_model", str(tmp_path))
    fake.queue_script(steps=1, extra_info={"prompt": "a red apple on a table"})
    window.settings.set("prompt", "a red apple")
    window.expand_action.trigger()
    _idle(qtbot, window)
    assert fake.requests[-1].model == str(tmp_path)
    assert window.settings.get("prompt") == "a red apple on a table"
    window.prompt_panel.prompt.undo()  # Ctrl+Z in the prompt box undoes it too
    assert window.settings.get("prompt") == "a red apple"


def test_expand_can_be_stopped(qtbot, window, fake):
    fake.queue_script(steps=3, pause_at=2, extra_info=dict(EXPANDED))
    window.settings.set("prompt", "a red apple")
    panel = window.prompt_panel
    qtbot.mouseClick(panel.expand, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(fake.paused.is_set, timeout=5000)
    assert panel.expand.text() == "Stop"
    qtbot.mouseClick(panel.expand, Qt.MouseButton.LeftButton)
    _idle(qtbot, window)
    assert window.settings.get("prompt") == "a red apple"
    assert panel.expand.text() == "Expand"
    assert window.toast.label.text() == "Cancelled."


def test_expand_failure_is_a_message_and_the_button_recovers(qtbot, window, fake):
    message = "The folder is not a causal language model (no config.json)."
    fake.queue_script(steps=1, outcome="failed", message=message)
    window.settings.set("prompt", "a red apple")
    window.understanding.expand()
    _idle(qtbot, window)
    assert window.toast.label.text() == message
    assert window.toast.kind == "error"
    assert window.settings.get("prompt") == "a red apple"
    assert window.prompt_panel.expand.text() == "Expand"


def test_expand_needs_a_prompt(qtbot, window, fake):
    window.understanding.expand()
    assert "Type a few words" in window.toast.label.text()
    assert fake.requests == []


# -- describe and interrogate -----------------------------------------------------------------
def test_missing_model_folders_say_what_to_pick_and_where(qtbot, window, fake, image_file):
    window.images.open_path(str(image_file))
    window.describe_action.trigger()
    text = window.toast.label.text()
    assert text == missing_model_message("caption_model")
    assert "image-to-text model folder" in text and "Settings" in text
    assert window.toast.action.text() == "Open settings"
    window.interrogate_action.trigger()
    assert "CLIP model folder" in window.toast.label.text()
    assert fake.requests == []
    window.toast.action.click()  # opens the settings dialog with the model folders
    dialogs = window.findChildren(SettingsDialog)
    assert len(dialogs) == 1 and dialogs[0].isVisible()
    assert "clip_model" in dialogs[0].understanding


def test_describe_puts_the_caption_into_the_prompt(qtbot, window, fake, image_file, tmp_path):
    window.preferences.set_understanding_folder("caption_model", str(tmp_path))
    window.images.open_path(str(image_file))
    fake.queue_script(steps=2, extra_info={"caption": "a colourful gradient"})
    window.describe_action.trigger()
    _idle(qtbot, window)
    request = fake.requests[-1]
    assert isinstance(request, CaptionRequest) and request.model == str(tmp_path)
    assert not Path(request.image).exists()  # the working file is removed
    dialog = _open_dialog(window)
    assert dialog.text.toPlainText() == "a colourful gradient"
    _dialog_button(dialog, "Use as prompt").click()
    assert window.settings.get("prompt") == "a colourful gradient"
    window.toast.action.click()  # Undo
    assert window.settings.get("prompt") == ""


def test_a_wrong_caption_model_is_a_message_and_the_working_file_goes(
    qtbot, window, fake, image_file, tmp_path
):
    window.preferences.set_understanding_folder("caption_model", str(tmp_path))
    window.images.open_path(str(image_file))
    message = f"{tmp_path} is a CLIP model, not an image-to-text model."
    fake.queue_script(steps=1, outcome="failed", message=message)
    window.describe_action.trigger()
    _idle(qtbot, window)
    assert window.toast.label.text() == message
    assert not Path(fake.requests[-1].image).exists()
    assert window.understanding.dialogs == []


def test_a_style_that_disappeared_is_named_not_sent(qtbot, window, fake):
    window.settings.set("prompt", "a red apple")
    window.settings.set("style", "My Deleted Style")
    assert "(missing)" in window.prompt_panel.style_picker.text()
    window.generation.generate()
    assert "Unknown style 'My Deleted Style'" in window.toast.label.text()
    assert fake.requests == []


def test_describe_needs_a_canvas_image(qtbot, window, fake, tmp_path):
    window.preferences.set_understanding_folder("caption_model", str(tmp_path))
    window.describe_action.trigger()
    assert "needs a picture on the canvas" in window.toast.label.text()
    assert fake.requests == []


def test_interrogate_a_gallery_image_adds_ticked_fragments(qtbot, window, fake, tmp_path):
    window.settings.set("prompt", "a red apple")
    window.settings.set("width", 64)
    window.settings.set("height", 64)
    window.generation.generate()
    _idle(qtbot, window)
    window.preferences.set_understanding_folder("clip_model", str(tmp_path))
    info = {
        "styles": [
            {"name": "Oil Painting", "text": "oil painting", "score": 0.31},
            {"name": "Watercolor", "text": "watercolor painting", "score": 0.22},
        ],
        "keywords": [
            {"category": "lighting", "text": "golden hour", "score": 0.28},
            {"category": "mood", "text": "serene", "score": 0.2},
        ],
    }
    fake.queue_script(steps=3, extra_info=info)
    menu = window.gallery_panel.menu_for(window.gallery.entries[0])
    entry_action = next(a for a in menu.actions() if a.text() == "Interrogate…")
    assert any(a.text() == "Describe image…" for a in menu.actions())
    entry_action.trigger()  # the gallery item's context menu
    _idle(qtbot, window)
    assert isinstance(fake.requests[-1], InterrogateRequest)
    dialog = _open_dialog(window)
    tree = dialog.fragments
    assert tree.topLevelItemCount() == 4
    assert tree.topLevelItem(0).text(2) == "0.310"
    tree.topLevelItem(3).setCheckState(0, Qt.CheckState.Unchecked)  # not "serene"
    _dialog_button(dialog, "Add ticked to prompt").click()
    assert window.settings.get("prompt") == "a red apple, oil painting, golden hour"
    assert len(window.gallery.entries) == 1  # the interrogation added no image


def test_settings_dialog_keeps_the_model_folders(qtbot, window, tmp_path):
    dialog = window.show_settings()
    dialog.understanding["caption_model"].setText(str(tmp_path))
    dialog.understanding["clip_model"].setText(str(tmp_path / "missing"))
    dialog.accept()
    assert window.preferences.understanding_folder("caption_model") == str(tmp_path)
    assert any("does not exist" in p for p in dialog.problems)


# -- the real engine --------------------------------------------------------------------------
def test_expand_on_the_real_engine_with_minilm(qtbot, no_network):
    import torch

    from desktop.app import create_window
    from desktop.bridge import EngineBridge

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 2 shared cores: one thread is several times faster here
    window = create_window(EngineBridge(preload=("engine.prompting.expand",), warm_up=()))
    qtbot.addWidget(window)
    window.show()
    window.start_background_work()
    try:
        qtbot.waitUntil(lambda: window.bridge.ready, timeout=60_000)
        window.settings.set("prompt", "a knight in shining armour")
        window.settings.set("seed_mode", "fixed")
        shown = []
        window.job.changed.connect(lambda: shown.append(window.progress_label.text()))
        window.understanding.expand()
        qtbot.waitUntil(lambda: not window.job.busy, timeout=60_000)
        assert any(text.startswith("Finding styles and keywords") for text in shown)
        expanded = window.settings.get("prompt")
        assert "a knight in shining armour" in expanded
        assert len(expanded) > len("a knight in shining armour") + 10
        assert "Prompt expanded" in window.toast.label.text()
    finally:
        window.close()
        torch.set_num_threads(threads)
