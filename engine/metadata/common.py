"""What every reader shares: turning foreign values into a valid request, honestly.

A value the file does not hold stays unknown (it is left out of `found`, so the app keeps what
the user has); a value Easel cannot run as written (a sampler it lacks, a seed beyond 64 bits, a
size off the 8-pixel grid) is kept as read in `extras`, shown, and explained in `notes`.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from engine.api import (
    MAX_BATCH,
    MAX_SEED,
    MAX_SIDE,
    MAX_STEPS,
    SAMPLERS,
    TOKEN_SAMPLERS,
    GenerationRequest,
    LoraRef,
    round_to_multiple,
)
from engine.errors import EaselError
from engine.metadata.chunks import MetadataError

log = logging.getLogger(__name__)
Parser = TypeVar("Parser", bound=Callable)

#: a prompt longer than this is cut (a 20 MB "prompt" is an attack, not a prompt)
MAX_PROMPT_CHARS = 20_000
_DEFAULTS = GenerationRequest()

#: request fields in the order the app shows them, with their labels
FIELD_LABELS = {
    "prompt": "Prompt",
    "negative_prompt": "Negative prompt",
    "model": "Model",
    "sampler": "Sampler",
    "steps": "Steps",
    "guidance_scale": "CFG scale",
    "seed": "Seed",
    "width": "Width",
    "height": "Height",
    "batch_size": "Batch size",
    "strength": "Denoising strength",
    "clip_skip": "Clip skip",
    "loras": "LoRAs",
}


@dataclass(frozen=True)
class ImportedSettings:
    """Settings read from an image: the request, the app that wrote them, what was found."""

    request: GenerationRequest
    source: str  # the app, as users know it: "AUTOMATIC1111", "ComfyUI", "Easel", ...
    found: frozenset[str] = frozenset()  # request fields the file really holds
    notes: tuple[str, ...] = ()  # what could not be carried over, or will differ
    original: dict = field(default_factory=dict)  # values as written, where Easel changed them

    def shown_values(self) -> list[tuple[str, str]]:
        """(label, value) for each field read, as the user should see it."""
        rows = []
        for name, label in FIELD_LABELS.items():
            if name not in self.found:
                continue
            value = self.original.get(name, getattr(self.request, name))
            if name == "loras":
                value = ", ".join(f"{lora.path} ({lora.weight:g})" for lora in value)
            rows.append((label, str(value)))
        return rows


def guarded(app: str) -> Callable[[Parser], Parser]:
    """A reader's contract: settings, None (not this app's), or MetadataError for data that is
    this app's but damaged. Wrong types deep in a foreign file end as that one message."""

    def wrap(parse: Parser) -> Parser:
        @functools.wraps(parse)
        def guarded_parse(*args, **kwargs):
            try:
                return parse(*args, **kwargs)
            except EaselError:
                raise
            except (TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError,
                    RecursionError) as exc:  # fmt: skip
                log.info("damaged %s metadata: %r", app, exc)
                raise MetadataError(f"The {app} metadata in this image is damaged.") from exc

        return guarded_parse  # type: ignore[return-value]

    return wrap


def as_list(value: Any) -> list:
    return value if isinstance(value, list) else []


def as_dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def number(value: Any, kind: type):
    """`value` as int or float, or None when it is not a number (never a default)."""
    if value is None or isinstance(value, bool) or value == "":
        return None
    try:
        if kind is int:
            if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
                return int(value.strip())  # exact, also past 2**53
            if isinstance(value, int):
                return value
            result = float(value)
            return int(result) if result == result and abs(result) < 2**70 else None
        result = float(value)
        return result if result == result and abs(result) != float("inf") else None
    except (TypeError, ValueError, OverflowError):
        return None


def text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def build_imported(source: str, **fields: Any) -> ImportedSettings:
    """A valid request from values read in another app's metadata.

    `fields` use request names; None means "not in the file". `extras` and `notes` may be passed
    to carry reader-specific details."""
    extras = dict(fields.pop("extras", None) or {})
    notes = list(fields.pop("notes", None) or ())
    extras["imported_from"] = source
    original: dict[str, Any] = {}
    clean = {name: value for name, value in fields.items() if value is not None}
    if not clean.get("loras"):
        clean.pop("loras", None)
    for name in ("prompt", "negative_prompt", "model"):
        if name in clean:
            clean[name] = _cut(name, str(clean[name]), notes)
    _fix_sampler(clean, extras, original, notes)
    _fix_seed(clean, extras, original, notes)
    _fix_numbers(clean, original, notes)
    _fix_size(clean, original, notes)
    found = frozenset(clean) | ({"loras"} if clean.get("loras") else frozenset())
    if "width" not in clean or "height" not in clean:
        notes.append("The image size is not in the file: your current size stays.")
    clean["extras"] = extras
    return ImportedSettings(
        request=GenerationRequest(**clean),
        source=source,
        found=found - {"extras"},
        notes=tuple(notes),
        original=original,
    )


def _cut(name: str, value: str, notes: list[str]) -> str:
    if len(value) <= MAX_PROMPT_CHARS:
        return value
    label = FIELD_LABELS.get(name, name).lower()
    notes.append(
        f"The {label} was {len(value):,} characters long; Easel kept the first "
        f"{MAX_PROMPT_CHARS:,}."
    )
    return value[:MAX_PROMPT_CHARS]


def _fix_sampler(clean: dict, extras: dict, original: dict, notes: list[str]) -> None:
    sampler = clean.get("sampler")
    if sampler is None or sampler in SAMPLERS or sampler in TOKEN_SAMPLERS:
        return
    extras["original_sampler"] = str(sampler)[:200]
    original["sampler"] = extras["original_sampler"]
    clean["sampler"] = _DEFAULTS.sampler
    notes.append(
        f"Sampler '{extras['original_sampler']}' is not one Easel has: it will use "
        f"'{_DEFAULTS.sampler}', so the picture will differ."
    )


def _fix_seed(clean: dict, extras: dict, original: dict, notes: list[str]) -> None:
    seed = clean.get("seed")
    if seed is None:
        return
    if 0 <= seed <= MAX_SEED:
        return
    extras["original_seed"] = str(seed)
    original["seed"] = str(seed)
    clean["seed"] = seed % (MAX_SEED + 1)
    notes.append(
        f"Seed {seed} is outside the range Easel can use (0 to {MAX_SEED}); it uses "
        f"{clean['seed']} instead, so the picture will differ."
    )


_RANGES = {
    "steps": (1, MAX_STEPS, "Steps"),
    "batch_size": (1, MAX_BATCH, "Batch size"),
    "guidance_scale": (0.0, 50.0, "CFG scale"),
    "clip_skip": (0, 12, "Clip skip"),
    "strength": (0.01, 1.0, "Denoising strength"),
}


def _fix_numbers(clean: dict, original: dict, notes: list[str]) -> None:
    for name, (low, high, label) in _RANGES.items():
        if name not in clean:
            continue
        value = type(low)(clean[name])
        fixed = min(max(value, low), high)
        if fixed != value:
            original[name] = clean[name]
            notes.append(f"{label} {clean[name]:g} is outside Easel's range; it uses {fixed:g}.")
        clean[name] = fixed


def _fix_size(clean: dict, original: dict, notes: list[str]) -> None:
    for side in ("width", "height"):
        if side not in clean:
            continue
        value = int(clean[side])
        fixed = min(round_to_multiple(max(value, 8)), MAX_SIDE)
        if fixed != value:
            original[side] = value
            notes.append(f"{side.title()} {value} is not one Easel can make; it uses {fixed}.")
        clean[side] = fixed


def lora_refs(pairs) -> tuple[LoraRef, ...]:
    """LoraRefs from (name, weight) pairs, skipping what is not a usable name or number."""
    refs = []
    for name, weight in pairs:
        value = number(weight, float)
        if isinstance(name, str) and name.strip():
            weight = 1.0 if value is None else min(max(value, -4.0), 4.0)
            refs.append(LoraRef(path=name.strip()[:500], weight=weight))
    return tuple(refs)
