"""Which built-in model a fresh install starts with: the text-to-image model that measures best.

Each built-in folder in resources/models/ carries a `quality.json` written by
`scripts/builtin_cards.py evaluate`: FID and KID against held-out emoji and, for the models that
take a prompt, prompt faithfulness on 20 held-out emoji names (plus `grid_count`, how many of the
16-prompt grid's pictures a person judged right). The first-launch default is the model most
likely to answer a new user's prompt: the highest faithfulness, then the higher grid count, then
the lower FID. A model without a faithfulness measure ignores prompts and is never the default.
The choice follows the measurements, so retraining a model and re-evaluating it is enough to
change it; no name is written into the app.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

from engine.paths import resource

#: used only when no built-in has a readable quality.json (a damaged or partial install)
FALLBACK_MODEL = "builtin:emoji-ldm"
QUALITY_FILE = "quality.json"


def measured_builtins(root: Path | None = None) -> dict[str, dict]:
    """Built-in name -> its quality.json, for every folder that has a readable one."""
    root = Path(root) if root is not None else resource("models")
    found = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        try:
            quality = json.loads((folder / QUALITY_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # not measured (or unreadable): it cannot win on numbers
        if isinstance(quality, dict):
            found[folder.name] = quality
    return found


def rank_key(quality: dict) -> tuple[float, float, float]:
    """Larger is better: (faithfulness rate, grid count, -FID); missing numbers rank last."""
    faithful = (quality.get("faithfulness") or {}).get("rate")
    grid = quality.get("grid_count")
    fid = (quality.get("model") or {}).get("fid")
    return (
        float(faithful) if faithful is not None else -math.inf,
        float(grid) if grid is not None else -math.inf,
        -float(fid) if fid is not None else -math.inf,
    )


def ranked_text_builtins(root: Path | None = None) -> list[str]:
    """Names of the built-ins that follow a prompt (measured faithfulness), best first."""
    text_models = {
        name: quality
        for name, quality in measured_builtins(root).items()
        if (quality.get("faithfulness") or {}).get("rate") is not None
    }
    # sorted by name first so equal measurements keep a fixed order
    return sorted(sorted(text_models), key=lambda n: rank_key(text_models[n]), reverse=True)


def best_builtin(root: Path | None = None) -> str | None:
    """Name of the prompt-following built-in that measures best, or None when none is."""
    ranked = ranked_text_builtins(root)
    return ranked[0] if ranked else None


@functools.lru_cache(maxsize=1)
def default_model() -> str:
    """`builtin:NAME` of the best measured built-in (read once per process)."""
    best = best_builtin()
    return f"builtin:{best}" if best else FALLBACK_MODEL
