"""Easel's own chunk: the full request as JSON, exactly what ran (`seed_used` for a random
seed), so "reproduce" gives the same picture."""

from __future__ import annotations

import dataclasses

from engine.api import GenerationRequest
from engine.errors import EaselError
from engine.metadata.chunks import load_json
from engine.metadata.common import (
    FIELD_LABELS,
    ImportedSettings,
    build_imported,
    guarded,
    number,
    text,
)

_FIELDS = {f.name for f in dataclasses.fields(GenerationRequest)}


@guarded("Easel")
def parse_easel(text: str) -> ImportedSettings | None:
    """Settings from an `easel` chunk, or None when it is not Easel's generation JSON."""
    data = load_json(text, "Easel metadata")
    if not isinstance(data, dict) or data.get("type", "generate") != "generate":
        return None
    if "seed_used" in data:
        data = {**data, "seed": data["seed_used"]}
    data = {k: v for k, v in data.items() if k in _FIELDS and k not in ("init_image", "mask_image")}
    data.pop("mode", None)  # the images a request named are working files that may be gone
    try:
        request = GenerationRequest.from_dict(data)
    except (EaselError, TypeError, ValueError, AttributeError, KeyError) as exc:
        return _salvage(data, exc)
    found = frozenset(name for name in FIELD_LABELS if name in data)
    return ImportedSettings(request=request, source="Easel", found=found)


def _salvage(data: dict, error: Exception) -> ImportedSettings:
    """What can be kept from Easel JSON that no longer validates (edited by hand, or older):
    each field checked on its own, the rest left unknown."""
    fields = {name: text(data.get(name)) for name in ("prompt", "negative_prompt", "model")}
    fields["sampler"] = text(data.get("sampler"))
    for name in ("seed", "steps", "width", "height", "batch_size", "clip_skip"):
        fields[name] = number(data.get(name), int)
    for name in ("guidance_scale", "strength"):
        fields[name] = number(data.get(name), float)
    note = f"Some of Easel's saved settings were not valid and were left out ({error})."
    return build_imported("Easel", **fields, notes=[note[:400]])
