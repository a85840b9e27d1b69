"""PNG writing: A1111's `parameters` text as A1111 1.10 writes it, Easel's JSON beside it.

The text is what A1111, Forge, civitai, sd-parsers and SD Prompt Reader understand; the JSON
(`easel` chunk) is the full request, which is what "reproduce" uses. Both describe what ran:
the model's name and short hash for every model (built-ins included), the sampler split into
A1111's sampler and schedule type, batch size and position, LoRA tags and `Lora hashes`.
"""

from __future__ import annotations

import io
import json
import logging
import sqlite3
from os import PathLike
from pathlib import Path
from typing import Any

from PIL import Image, PngImagePlugin

from engine.errors import EaselError
from engine.metadata.a1111 import A1111_NAMES, LORA_TAG
from engine.metadata.a1111_control import control_fields, first_pass_size, hires_fields
from engine.paths import atomic_write_bytes

log = logging.getLogger(__name__)

EASEL_KEY = "easel"
A1111_KEY = "parameters"
VERSION = "Easel 0.1.0"
SHORT_HASH_DIGITS = 10  # A1111's model hash
LORA_SHORT_HASH_DIGITS = 12  # A1111's Lora hashes are longer


def save_png_with_metadata(image: Image.Image, path: str | PathLike, metadata: dict) -> Path:
    """Write `image` as PNG with the A1111 and Easel chunks; atomic (never a half file)."""
    info = PngImagePlugin.PngInfo()
    info.add_text(A1111_KEY, a1111_parameters(metadata))
    info.add_text(EASEL_KEY, json.dumps(metadata, sort_keys=True, default=str))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return atomic_write_bytes(path, buffer.getvalue())


def a1111_parameters(metadata: dict) -> str:
    """The `parameters` text exactly as A1111 1.10 lays it out.

    Built from the dict itself (not a validated request), so metadata from any family (a 28x28
    GAN sample, say) still gets a readable line instead of an error.
    """
    get = metadata.get
    listed = get("loras")
    loras = [_lora_fields(item) for item in listed] if isinstance(listed, (list, tuple)) else []
    prompt = _prompt_with_tags(str(get("prompt", "")), loras)
    lines = [prompt]
    if get("negative_prompt"):
        lines.append(f"Negative prompt: {get('negative_prompt')}")
    sampler, schedule = A1111_NAMES.get(str(get("sampler")), (get("sampler"), None))
    batch_size, batch_pos = _batch(metadata)
    hires = hires_fields(metadata)
    fields: list[tuple[str, Any]] = [
        ("Steps", get("steps")),
        ("Sampler", sampler),
        ("Schedule type", schedule),
        ("CFG scale", _number_text(get("guidance_scale"))),
        ("Seed", get("seed")),
        ("Size", _size_text(metadata, bool(hires))),
        ("Model hash", model_hash(metadata) or None),
        ("Model", _a1111_name(model_name(metadata)) or None),
        ("Batch size", batch_size),
        ("Batch pos", batch_pos),
    ]
    if str(get("mode", "txt2img")) != "txt2img":
        fields.append(("Denoising strength", _number_text(get("strength"))))
    elif hires:
        fields.append(hires.pop(0))  # the hires pass's strength, where A1111 writes it
    if _int(get("clip_skip")) > 1:
        fields.append(("Clip skip", get("clip_skip")))
    lora_hashes = _lora_hashes(loras, get("lora_hashes"))
    if lora_hashes:
        fields.append(("Lora hashes", lora_hashes))
    fields += [field for field in hires if field[0] != "Denoising strength"]
    fields += control_fields(metadata)
    fields.append(("Version", VERSION))
    lines.append(", ".join(f"{k}: {_quote(v)}" for k, v in fields if v is not None))
    return "\n".join(lines)


def _size_text(metadata: dict, hires: bool) -> str | None:
    """`Size` as A1111 writes it: with the hires fix, the first pass's size."""
    width, height = metadata.get("width"), metadata.get("height")
    if not (width and height):
        return None
    if hires:
        first = first_pass_size(width, height, (metadata.get("hires") or {}).get("scale"))
        if first:
            width, height = first
    return f"{width}x{height}"


def model_name(metadata: dict) -> str:
    """The name A1111 would show: the file or folder name without extension; a built-in's
    own name (`builtin:emoji-ldm` -> `emoji-ldm`)."""
    name = metadata.get("model_name")
    if name:
        return str(name)
    model = str(metadata.get("model_path") or metadata.get("model") or "")
    if model.startswith("builtin:"):
        return model.split(":", 1)[1]
    path = Path(model)
    return (
        path.stem if path.suffix.lower() in {".safetensors", ".ckpt", ".pt", ".pth"} else path.name
    )


def model_hash(metadata: dict) -> str:
    """A1111's short hash (10 hex digits of the weights' SHA-256) for any model: as the run
    recorded it, else from the file (a checkpoint, or a native folder's model.safetensors).
    Hashes are cached by path, size and mtime, so a file is read once."""
    recorded = metadata.get("model_hash")
    if recorded:
        return str(recorded)
    reference = str(metadata.get("model_path") or metadata.get("model") or "")
    try:
        from engine.library.resolve import model_path

        path = model_path(reference)
        if (path / "model.safetensors").is_file():  # a native model folder: its weights
            path = path / "model.safetensors"
        # a diffusers folder has no single weights file: the hash of its files together
        return _cached_sha256(path)[:SHORT_HASH_DIGITS] if path.exists() else ""
    except (EaselError, OSError, sqlite3.Error) as exc:
        log.info("no model hash for %r: %s", reference, exc)
        return ""


def _cached_sha256(path: Path) -> str:
    from engine.library.hashing import HashCache

    return HashCache().sha256(path)


def _a1111_name(name: str) -> str:
    # A1111 strips these from names it writes: both readers would split the value on them
    return name.replace(",", "").replace(":", "").replace("\n", " ").strip()


def _batch(metadata: dict) -> tuple[int | None, int | None]:
    """(Batch size, Batch pos) for an image of a batch of 2 or more, as A1111 writes them."""
    total = _int(metadata.get("batch_total"))
    if not total and "image_index" in metadata:  # native families keep the batch size
        total = _int(metadata.get("batch_size"))
    position = metadata.get("batch_index", metadata.get("image_index"))
    if total < 2 or position is None:
        return None, None
    return total, _int(position)


def _lora_fields(item: Any) -> tuple[str, float]:
    if isinstance(item, dict):
        path, weight = item.get("path", ""), item.get("weight", 1.0)
    else:
        path, weight = getattr(item, "path", ""), getattr(item, "weight", 1.0)
    try:
        return str(path), float(weight)
    except (TypeError, ValueError):
        return str(path), 1.0


def _lora_alias(path: str) -> str:
    name = Path(path).name
    for suffix in (".safetensors", ".ckpt", ".pt", ".pth", ".bin"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _prompt_with_tags(prompt: str, loras: list[tuple[str, float]]) -> str:
    """The prompt with a `<lora:name:weight>` tag per LoRA: tags the user typed stay where they
    are; LoRAs picked in the panel are appended, as A1111's extra-networks button does."""
    typed = {name for name, _ in LORA_TAG.findall(prompt)}
    added = "".join(
        f" <lora:{_lora_alias(path)}:{weight:g}>"
        for path, weight in loras
        if path and _lora_alias(path) not in typed
    )
    return (prompt + added).strip() if added else prompt


def _lora_hashes(loras: list[tuple[str, float]], known: Any) -> str | None:
    """A1111's `Lora hashes` value: `name: 12-digit hash` per LoRA whose hash is known or can be
    read from the file (hashes are cached, so a LoRA is read once)."""
    known = known if isinstance(known, dict) else {}
    pairs = []
    for path, _ in loras:
        alias = _lora_alias(path)
        digest = known.get(alias) or known.get(path) or _file_short_hash(path)
        if digest:
            pairs.append(f"{_a1111_name(alias)}: {str(digest)[:LORA_SHORT_HASH_DIGITS]}")
    return ", ".join(pairs) or None


def _file_short_hash(path: str) -> str:
    if not path or not Path(path).is_file():
        return ""
    try:
        return _cached_sha256(Path(path))[:LORA_SHORT_HASH_DIGITS]
    except (EaselError, OSError, sqlite3.Error) as exc:  # a nicety: the image is still saved
        log.info("no hash for LoRA %s: %s", path, exc)
        return ""


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _number_text(value: Any) -> str | None:
    try:
        return f"{float(value):g}"
    except (TypeError, ValueError):
        return None


def _quote(value: Any) -> str:
    """A1111's `infotext_utils.quote`: JSON-quoted only when a comma, colon or newline is in it."""
    text = str(value)
    if any(ch in text for ch in ",:\n"):
        return json.dumps(text, ensure_ascii=False)
    return text
