"""CLIP tokenizers, built once per distinct set of files and shared by every pipeline.

Building a CLIP tokenizer parses a 1-2 MB vocabulary (twice, when the folder has a
tokenizer.json) and builds the BPE model in Rust; each of those holds the GIL for 20-40 ms,
which the GUI thread feels as a frozen frame in the middle of a model load. Nearly every SD 1.x
model carries the very same tokenizer, and single-file checkpoints all use the ones bundled in
resources/tokenizers, so the engine builds each distinct tokenizer once, keyed by the content of
its files, and the app builds the chosen model's tokenizers ahead of time (`prefetch`) while
the user is still typing the prompt.

Pipelines only ever encode with their tokenizer (Easel never adds tokens to one), so sharing an
instance between pipelines is safe.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from pathlib import Path

log = logging.getLogger(__name__)

#: tokenizer classes this cache builds; anything else is left to diffusers
CLIP_CLASSES = ("CLIPTokenizer", "CLIPTokenizerFast")
#: the files that define a tokenizer (others in the folder, e.g. a README, do not count)
TOKENIZER_FILES = (
    "vocab.json",
    "merges.txt",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
)

_lock = threading.Lock()
_cache: dict[str, object] = {}


def content_key(folder: Path) -> str | None:
    """A hash of the folder's tokenizer files (names and bytes); None if it has no vocabulary."""
    digest = hashlib.sha256()
    found = False
    for name in TOKENIZER_FILES:
        path = folder / name
        if path.is_file():
            found = found or name in ("vocab.json", "tokenizer.json")
            digest.update(name.encode() + b"\0")
            digest.update(path.read_bytes())  # hashlib releases the GIL on large buffers
    return digest.hexdigest() if found else None


def clip_tokenizer(folder: Path):
    """The CLIP tokenizer stored in `folder`, built on first use and shared afterwards."""
    from transformers import CLIPTokenizer

    key = content_key(folder)
    if key is None:
        return CLIPTokenizer.from_pretrained(str(folder))
    with _lock:  # the app's prefetch thread and the engine thread may ask at the same time
        tokenizer = _cache.get(key)
        if tokenizer is None:
            tokenizer = _cache[key] = CLIPTokenizer.from_pretrained(str(folder))
        return tokenizer


def bundled(variant: str):
    """One of the tokenizers in resources/tokenizers ("clip", "clip-g")."""
    from engine.paths import resource

    return clip_tokenizer(Path(resource("tokenizers", variant)))


def folder_components(model_folder: Path) -> dict[str, Path]:
    """{component: folder} for the CLIP tokenizers a diffusers folder's model_index.json names."""
    try:
        index = json.loads((model_folder / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    found = {}
    for component in ("tokenizer", "tokenizer_2"):
        entry = index.get(component)
        folder = model_folder / component
        if isinstance(entry, list) and entry[-1:] and entry[-1] in CLIP_CLASSES:
            if folder.is_dir():
                found[component] = folder
    return found


def single_file_variants(path: Path) -> dict[str, str]:
    """{component: bundled variant} that loading the single-file checkpoint `path` will use."""
    from engine.library.single_file import choose_config, tokenizer_variants

    config_dir, _ = choose_config(path)
    return tokenizer_variants(config_dir)


def prefetch(model: str | Path) -> int:
    """Build the tokenizers that loading `model` will need; returns how many. Never raises:
    this is only a head start, and the load itself reports any problem with the model."""
    path = Path(model)
    try:
        if path.is_dir():
            tokenizers = [clip_tokenizer(f) for f in folder_components(path).values()]
        elif path.is_file() and path.suffix.lower() == ".safetensors":
            tokenizers = [bundled(v) for v in single_file_variants(path).values()]
        else:
            return 0
    except Exception:  # noqa: BLE001 - a broken model is reported when it is loaded
        log.debug("tokenizer prefetch for %s failed", path, exc_info=True)
        return 0
    return len(tokenizers)
