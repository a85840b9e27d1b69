"""Style presets: the bundled data is complete and applying a style does what users expect."""

from __future__ import annotations

import json
import sys

import pytest

from engine.errors import InputError
from engine.prompting import styles
from engine.prompting.styles import apply_style, find_style, load_keywords, load_styles


def test_at_least_50_complete_distinct_styles():
    presets = load_styles()
    assert len(presets) >= 50
    assert len({s.name.lower() for s in presets}) == len(presets)
    for style in presets:
        assert style.positive and style.negative and style.preview, style.name
        assert style.positive.count("{prompt}") <= 1
        assert len(style.fragments) >= 3, style.name
    assert len(styles.style_categories()) >= 5
    # distinct looks, not one template reworded: positives share few fragments
    firsts = {s.fragments[0] for s in presets}
    assert len(firsts) == len(presets)


def test_styles_module_imports_without_torch():
    code = (
        "import sys, engine.prompting.styles as s; s.load_styles(); print('torch' in sys.modules)"
    )
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_apply_style_puts_the_prompt_in_place_and_merges_negatives():
    prompt, negative = apply_style("Watercolor", "a lighthouse at dawn, soft washes", "blurry")
    assert prompt.startswith("watercolor painting of a lighthouse at dawn")
    assert prompt.count("soft washes") == 1  # the user's fragment is not repeated
    assert negative.split(", ")[0] == "blurry" and "3d render" in negative


def test_apply_style_edge_cases():
    assert apply_style(None, "  a cat ", " dog ") == ("a cat", "dog")
    prompt, _ = apply_style(find_style("oil painting"), "")
    assert prompt.startswith("oil painting, visible brushstrokes")
    appended = styles.Style("Plain", "Test", "high contrast, grain")
    assert apply_style(appended, "a street, grain") == ("a street, grain, high contrast", "")


def test_unknown_style_suggests_names():
    with pytest.raises(InputError, match="Did you mean: .*Oil Painting"):
        find_style("painting")


def test_keyword_bank_has_categories():
    keywords = load_keywords()
    assert {"lighting", "composition", "mood", "color"} <= set(keywords)
    assert sum(len(v) for v in keywords.values()) >= 60


def test_user_styles_extend_and_replace(isolated_data_dir):
    user_file = isolated_data_dir / "styles.json"
    user_file.write_text(
        json.dumps(
            {
                "styles": [
                    {"name": "My Look", "positive": "{prompt}, teal glow", "negative": "dull"},
                    {
                        "name": "Cinematic",
                        "category": "Photography",
                        "positive": "movie of {prompt}",
                    },
                ]
            }
        )
    )
    names = [s.name for s in load_styles()]
    assert "My Look" in names and names.count("Cinematic") == 1
    assert apply_style("cinematic", "a boat")[0] == "movie of a boat"
    user_file.write_text("{broken")
    with pytest.raises(InputError, match="not valid JSON"):
        load_styles()
