"""Wildcards: `__colour__` in a prompt becomes one line of `wildcards/colour.txt`.

As in Fooocus and A1111's dynamic prompts: each file in the data folder's `wildcards/` holds
one choice per line (blank lines and `#` comments are skipped); a choice may itself hold
wildcards, up to a few levels deep. The choice is drawn from the request's seed, so the same
seed always gives the same prompt (reuse settings, a fixed seed, the CLI all agree), and the
expanded prompt is what the model sees and what metadata records, with the template kept
beside it. No torch here: the GUI expands before it submits.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

from engine.errors import InputError
from engine.paths import user_data_dir

PATTERN = re.compile(r"__([A-Za-z0-9][\w\-/ ]*?)__")
MAX_DEPTH = 6


def wildcards_dir() -> Path:
    return user_data_dir() / "wildcards"


def has_wildcards(text: str) -> bool:
    return bool(PATTERN.search(text))


def available(folder: Path | None = None) -> list[str]:
    """Wildcard names the folder offers (`colour` for colour.txt, `art/style` in subfolders)."""
    folder = Path(folder) if folder else wildcards_dir()
    if not folder.is_dir():
        return []
    return sorted(p.relative_to(folder).with_suffix("").as_posix() for p in folder.rglob("*.txt"))


def expand(template: str, seed: int, folder: Path | None = None) -> str:
    """The prompt with every `__name__` replaced by a choice drawn from `seed`."""
    if not has_wildcards(template):
        return template
    folder = Path(folder) if folder else wildcards_dir()
    rng = random.Random(f"easel-wildcards:{int(seed)}")  # str seeds hash stably (SHA-512)
    cache: dict[str, list[str]] = {}
    text = template
    for _ in range(MAX_DEPTH):
        if not has_wildcards(text):
            return text
        text = PATTERN.sub(lambda m: rng.choice(_choices(m.group(1), folder, cache)), text)
    if has_wildcards(text):
        raise InputError(
            f"The wildcards in the prompt refer to each other more than {MAX_DEPTH} levels deep "
            f"(still left: {PATTERN.search(text).group(0)}). Check the files in {folder}."
        )
    return text


def _choices(name: str, folder: Path, cache: dict[str, list[str]]) -> list[str]:
    if name in cache:
        return cache[name]
    path = folder / f"{name.strip()}.txt"
    if not path.resolve().is_relative_to(folder.resolve()):
        raise InputError(f"The wildcard __{name}__ points outside the wildcards folder.")
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except FileNotFoundError:
        raise InputError(
            f"There is no wildcard file for __{name}__: create {path} with one choice per "
            "line, or remove the wildcard from the prompt."
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"The wildcard file {path} cannot be read ({exc}).") from exc
    choices = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not choices:
        raise InputError(f"The wildcard file {path} has no choices: add one per line.")
    cache[name] = choices
    return choices
