"""CLIP and T5 tokenizers, built once per distinct set of files and shared by every pipeline.

Building a CLIP tokenizer parses a 1-2 MB vocabulary (twice, when the folder has a
tokenizer.json) and builds the BPE model in Rust; each of those holds the GIL for 20-40 ms,
which the GUI thread feels as a frozen frame in the middle of a model load. Nearly every SD 1.x
model carries the very same tokenizer, and single-file checkpoints all use the ones bundled in
resources/tokenizers, so the engine builds each distinct tokenizer once, keyed by the content of
its files (T5's 2.4 MB tokenizer.json, which SD3 and FLUX folders all carry, likewise), and the
app builds the chosen model's tokenizers ahead of time (`prefetch`) while the user is still
typing the prompt.

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
T5_CLASSES = ("T5Tokenizer", "T5TokenizerFast")
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

    return _shared(folder, CLIPTokenizer)


def t5_tokenizer(folder: Path):
    """The T5 tokenizer stored in `folder` (SentencePiece in tokenizer.json), shared likewise."""
    from transformers import T5TokenizerFast

    return _shared(folder, T5TokenizerFast)


def shared_tokenizer(folder: Path, class_name: str):
    """The shared tokenizer of class `class_name` (one of CLIP_CLASSES or T5_CLASSES)."""
    return t5_tokenizer(folder) if class_name in T5_CLASSES else clip_tokenizer(folder)


def _shared(folder: Path, cls):
    key = content_key(folder)
    if key is None:
        return cls.from_pretrained(str(folder), local_files_only=True)
    key = f"{cls.__name__}:{key}"
    with _lock:  # the app's prefetch thread and the engine thread may ask at the same time
        tokenizer = _cache.get(key)
        if tokenizer is None:
            tokenizer = _cache[key] = cls.from_pretrained(str(folder), local_files_only=True)
        return tokenizer


def bundled(variant: str):
    """One of the tokenizers in resources/tokenizers ("clip", "clip-g", "t5")."""
    from engine.paths import resource

    folder = Path(resource("tokenizers", variant))
    return t5_tokenizer(folder) if variant == "t5" else clip_tokenizer(folder)


def folder_components(model_folder: Path) -> dict[str, Path]:
    """{component: folder} for the CLIP and T5 tokenizers a diffusers folder's model_index.json
    names."""
    try:
        index = json.loads((model_folder / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    found = {}
    for component in ("tokenizer", "tokenizer_2", "tokenizer_3"):
        entry = index.get(component)
        folder = model_folder / component
        if isinstance(entry, list) and entry[-1:] and entry[-1] in CLIP_CLASSES + T5_CLASSES:
            if folder.is_dir():
                found[component] = folder
    return found


def folder_tokenizers(model_folder: Path) -> dict[str, object]:
    """{component: shared tokenizer} for a diffusers folder's CLIP and T5 tokenizers."""
    return {
        component: shared_tokenizer(folder, _class_name(model_folder, component))
        for component, folder in folder_components(model_folder).items()
    }


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
            tokenizers = list(folder_tokenizers(path).values())
        elif path.is_file() and path.suffix.lower() == ".safetensors":
            tokenizers = [bundled(v) for v in single_file_variants(path).values()]
        else:
            return 0
    except Exception:  # noqa: BLE001 - a broken model is reported when it is loaded
        log.debug("tokenizer prefetch for %s failed", path, exc_info=True)
        return 0
    return len(tokenizers)


def _class_name(model_folder: Path, component: str) -> str:
    index = json.loads((model_folder / "model_index.json").read_text(encoding="utf-8"))
    return index[component][-1]
