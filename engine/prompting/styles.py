"""Style presets: named positive/negative prompt fragments applied on top of the user's prompt.

The presets are data (`resources/styles.json`, 70+ curated styles and a bank of keyword
fragments by category). A user's own `styles.json` in the Easel data folder adds styles or
replaces bundled ones of the same name. No torch here: the prompt panel's picker imports this on
the GUI thread.

A style's positive text may hold `{prompt}` where the user's prompt goes ("oil painting of
{prompt}, visible brushstrokes"); without it the style is appended. Fragments are merged
comma by comma, so nothing the user already wrote is repeated.
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from engine.errors import InputError
from engine.paths import resource, user_data_dir

PLACEHOLDER = "{prompt}"
STYLES_FILE = "styles.json"


@dataclass(frozen=True)
class Style:
    """One preset. `preview` is a sentence the picker shows (what the style looks like)."""

    name: str
    category: str
    positive: str
    negative: str = ""
    preview: str = ""

    @property
    def fragments(self) -> tuple[str, ...]:
        """The style's own positive fragments, without the prompt ("oil painting", ...)."""
        text = self.positive.replace(f" of {PLACEHOLDER}", "").replace(PLACEHOLDER, "")
        return tuple(split_fragments(text))

    @property
    def description(self) -> str:
        """Text that says what the style is (used to match prompts and images to it)."""
        return f"{self.name} style: {', '.join(self.fragments)}. {self.preview}"


def split_fragments(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def printable_text(text: str) -> str:
    """`text` without control characters and undecodable bytes (U+FFFD), spaces collapsed.

    Small or random language models can emit half of a multi-byte character or a control
    byte; none of that may reach the prompt box.
    """
    kept = (ch for ch in text if ch != "\ufffd" and not unicodedata.category(ch).startswith("C"))
    return " ".join("".join(kept).split())


def merge_fragments(*texts: str) -> str:
    """Join comma-separated texts, keeping each fragment once (case-insensitive)."""
    seen: set[str] = set()
    kept = []
    for text in texts:
        for fragment in split_fragments(text or ""):
            key = " ".join(fragment.lower().split())
            if key not in seen:
                seen.add(key)
                kept.append(fragment)
    return ", ".join(kept)


def apply_style(style: Style | str | None, prompt: str, negative: str = "") -> tuple[str, str]:
    """(prompt, negative) with `style` applied; a name is looked up, None changes nothing."""
    if style is None or style == "":
        return prompt.strip(), negative.strip()
    if isinstance(style, str):
        style = find_style(style)
    prompt = prompt.strip()
    if PLACEHOLDER in style.positive:
        template = style.positive if prompt else style.positive.replace(f" of {PLACEHOLDER}", "")
        positive = template.replace(PLACEHOLDER, prompt)
    else:
        positive = merge_fragments(prompt, style.positive)
    return merge_fragments(positive), merge_fragments(negative, style.negative)


def load_styles() -> tuple[Style, ...]:
    """Bundled styles, then the user's own (which replace bundled ones of the same name)."""
    return _load_styles_cached(_user_styles_stamp())


def find_style(name: str) -> Style:
    wanted = name.strip().lower()
    for style in load_styles():
        if style.name.lower() == wanted:
            return style
    close = [s.name for s in load_styles() if wanted and wanted in s.name.lower()]
    hint = f" Did you mean: {', '.join(close[:5])}?" if close else " See the style picker."
    raise InputError(f"Unknown style '{name}'.{hint}")


def style_categories() -> list[str]:
    """Categories in the order they first appear (the picker's sections)."""
    return list(dict.fromkeys(style.category for style in load_styles()))


@lru_cache(maxsize=1)
def load_keywords() -> dict[str, tuple[str, ...]]:
    """Keyword fragments by category ("lighting": ("golden hour", ...), ...)."""
    data = _read_styles_file(resource(STYLES_FILE))
    return {str(k): tuple(str(v) for v in values) for k, values in data["keywords"].items()}


def all_keywords() -> list[tuple[str, str]]:
    """(category, fragment) pairs of the whole keyword bank."""
    return [(cat, text) for cat, texts in load_keywords().items() for text in texts]


def _user_styles_path() -> Path:
    return user_data_dir() / STYLES_FILE


def _user_styles_stamp() -> tuple[str, int, int]:
    """Path, change time and size of the user's styles file: a new stamp reloads the styles."""
    path = _user_styles_path()
    try:
        stat = path.stat()
    except OSError:
        return str(path), 0, -1
    return str(path), stat.st_mtime_ns, stat.st_size


@lru_cache(maxsize=4)
def _load_styles_cached(user_stamp: tuple[str, int, int]) -> tuple[Style, ...]:
    styles = {s.name.lower(): s for s in _parse_styles(resource(STYLES_FILE))}
    user_path, _, size = user_stamp
    if size >= 0:
        for style in _parse_styles(Path(user_path)):
            styles[style.name.lower()] = style
    return tuple(styles.values())


def _read_styles_file(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"The styles file {path} is missing; reinstall Easel.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(
            f"The styles file {path} is not valid JSON ({exc}); fix or delete it."
        ) from exc
    if not isinstance(data, dict) or not isinstance(data.get("styles"), list):
        raise InputError(f'The styles file {path} should hold {{"styles": [...]}}.')
    data.setdefault("keywords", {})
    return data


def _parse_styles(path: Path) -> list[Style]:
    styles = []
    for index, entry in enumerate(_read_styles_file(path)["styles"]):
        if not isinstance(entry, dict) or not str(entry.get("name", "")).strip():
            raise InputError(f"Style #{index + 1} in {path} has no name; fix the file.")
        if not str(entry.get("positive", "")).strip():
            raise InputError(f"Style '{entry['name']}' in {path} has no positive text.")
        styles.append(
            Style(
                name=str(entry["name"]).strip(),
                category=str(entry.get("category", "Other")).strip() or "Other",
                positive=str(entry["positive"]).strip(),
                negative=str(entry.get("negative", "")).strip(),
                preview=str(entry.get("preview", "")).strip(),
            )
        )
    return styles
