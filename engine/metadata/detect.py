"""Which app wrote an image's metadata, each told by its own signature, best source first.

Easel's chunk, then the apps with chunks of their own (InvokeAI, ComfyUI, NovelAI, Fooocus),
then A1111's text wherever it lives (PNG chunk, EXIF UserComment, stealth bits in the pixels).
A reader that finds damaged data is skipped with a note; the next one gets its turn.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from os import PathLike

from engine.api import GenerationRequest
from engine.errors import EaselError, InputError
from engine.metadata.a1111 import is_a1111, parse_a1111
from engine.metadata.chunks import ImageText, load_json, read_image_text, read_stealth_text
from engine.metadata.comfyui import parse_comfyui
from engine.metadata.common import ImportedSettings
from engine.metadata.easel import parse_easel
from engine.metadata.fooocus import parse_fooocus
from engine.metadata.invokeai import is_dream, parse_dream, parse_invokeai, parse_sd_metadata
from engine.metadata.novelai import is_novelai, parse_novelai

log = logging.getLogger(__name__)

Reader = Callable[[], ImportedSettings | None]


def read_png_text(path: str | PathLike) -> dict[str, str]:
    """Text chunks of an image file ({} when it is not an image Easel reads metadata from)."""
    try:
        return read_image_text(path).chunks
    except EaselError as exc:
        log.info("no metadata from %s: %s", path, exc)
        return {}


def read_image_settings(path: str | PathLike) -> ImportedSettings | None:
    """Settings that made the image at `path`, from whichever app wrote them, or None.

    Raises InputError only when the file cannot be read at all; damaged or oversized metadata
    is skipped (and said so in the notes of whatever else could be read)."""
    info = read_image_text(path)
    skipped = list(info.skipped)
    for name, reader in _readers(info):
        try:
            found = reader()
        except EaselError as exc:
            log.info("could not read %s metadata from %s: %s", name, path, exc)
            skipped.append(f"{name} metadata ({exc})")
            continue
        if found is not None:
            return _with_skipped(found, skipped)
    stealth = _stealth(path, info) if not info.chunks and info.user_comment is None else None
    if stealth is not None:
        return _with_skipped(stealth, skipped)
    if skipped:
        raise InputError("The image's settings could not be read: " + "; ".join(skipped[:3]))
    return None


def read_generation_metadata(path: str | PathLike) -> GenerationRequest | None:
    """The request that made the image at `path`, or None (also when it cannot be read)."""
    try:
        found = read_image_settings(path)
    except EaselError as exc:
        log.info("no settings from %s: %s", path, exc)
        return None
    return found.request if found is not None else None


def _readers(info: ImageText) -> list[tuple[str, Reader]]:
    chunks = info.chunks
    readers: list[tuple[str, Reader]] = []
    add = readers.append
    if "easel" in chunks:
        add(("Easel", lambda: parse_easel(chunks["easel"])))
    if "invokeai_metadata" in chunks:
        add(("InvokeAI", lambda: parse_invokeai(chunks["invokeai_metadata"])))
    if "sd-metadata" in chunks:
        add(("InvokeAI", lambda: parse_sd_metadata(chunks["sd-metadata"])))
    if "Dream" in chunks and is_dream(chunks["Dream"]):
        add(("InvokeAI", lambda: parse_dream(chunks["Dream"])))
    if "prompt" in chunks or "workflow" in chunks:
        add(("ComfyUI", lambda: parse_comfyui(chunks.get("prompt"), chunks.get("workflow"))))
    if is_novelai(chunks):
        add(("NovelAI", lambda: parse_novelai(chunks)))
    parameters = chunks.get("parameters")
    if parameters is not None:
        scheme = chunks.get("fooocus_scheme")
        add(("Fooocus", lambda: parse_fooocus(parameters, scheme)))
        if is_a1111(parameters):
            add(("AUTOMATIC1111", lambda: parse_a1111(parameters)))
    comment = info.user_comment
    if comment is not None:
        add(("AUTOMATIC1111", lambda: parse_a1111(comment)))
        add(("Fooocus", lambda: parse_fooocus(comment)))
    return readers


def _stealth(path: str | PathLike, info: ImageText) -> ImportedSettings | None:
    """A1111's (or NovelAI's) metadata hidden in the pixels' lowest bits."""
    hidden = read_stealth_text(path, info)
    if hidden is None:
        return None
    try:
        if hidden.lstrip().startswith("{"):
            data = load_json(hidden, "hidden metadata")
            if isinstance(data, dict):
                chunks = {
                    str(k): v if isinstance(v, str) else json.dumps(v) for k, v in data.items()
                }
                return parse_novelai(chunks)
        return parse_a1111(hidden)
    except EaselError as exc:
        log.info("stealth metadata in %s unreadable: %s", path, exc)
        return None


def _with_skipped(found: ImportedSettings, skipped: list[str]) -> ImportedSettings:
    if not skipped:
        return found
    notes = (*found.notes, *(f"Not read: {item}." for item in skipped[:5]))
    return ImportedSettings(found.request, found.source, found.found, notes, found.original)
