"""Fooocus: its own JSON in the `parameters` chunk, flagged by `fooocus_scheme` = "fooocus".

(With the "a1111" scheme Fooocus writes A1111 text instead, which the A1111 reader takes.)
Fooocus samplers are ComfyUI's (`dpmpp_2m_sde_gpu`, `karras`), its seeds run to 2**63.
"""

from __future__ import annotations

import re
from typing import Any

from engine.metadata.chunks import load_json
from engine.metadata.comfyui import comfy_sampler
from engine.metadata.common import (
    ImportedSettings,
    as_list,
    build_imported,
    guarded,
    lora_refs,
    number,
    text,
)

_RESOLUTION = re.compile(r"\(\s*(\d{1,6})\s*,\s*(\d{1,6})\s*\)")
#: Fooocus features with no Easel counterpart: shown as not carried over when they are set
_FOOOCUS_ONLY = ("styles", "sharpness", "adm_guidance", "refiner_model", "performance")


def is_fooocus(data: Any, scheme: str | None = None) -> bool:
    if not isinstance(data, dict):
        return False
    return (
        scheme == "fooocus"
        or data.get("metadata_scheme") == "fooocus"
        or ("base_model" in data and "full_prompt" in data)
    )


@guarded("Fooocus")
def parse_fooocus(parameters: str, scheme: str | None = None) -> ImportedSettings | None:
    """Settings from Fooocus's JSON, or None when it is not Fooocus's."""
    if not isinstance(parameters, str) or not parameters.lstrip().startswith("{"):
        return None
    data = load_json(parameters, "Fooocus metadata")
    if not is_fooocus(data, scheme):
        return None
    resolution = _RESOLUTION.fullmatch(str(data.get("resolution", "")).strip())
    width, height = (int(resolution[1]), int(resolution[2])) if resolution else (None, None)
    loras = [item[:2] for item in as_list(data.get("loras")) if isinstance(item, list) and item]
    if any(len(pair) < 2 for pair in loras):
        loras = [(pair[0], 1.0) if len(pair) < 2 else pair for pair in loras]
    unused = [key for key in _FOOOCUS_ONLY if data.get(key) not in (None, "", "None", "[]")]
    notes = [f"Not used by Easel: {', '.join(unused)}"] if unused else []
    extras = (
        {"model_hash": data["base_model_hash"][:64]} if text(data.get("base_model_hash")) else {}
    )
    return build_imported(
        "Fooocus",
        prompt=text(data.get("prompt")),
        negative_prompt=text(data.get("negative_prompt")),
        seed=number(data.get("seed"), int),
        steps=number(data.get("steps"), int),
        guidance_scale=number(data.get("guidance_scale"), float),
        sampler=comfy_sampler(data.get("sampler"), data.get("scheduler"), notes),
        width=width,
        height=height,
        clip_skip=number(data.get("clip_skip"), int),
        model=text(data.get("base_model")) or None,
        loras=lora_refs(loras),
        extras=extras,
        notes=notes,
    )
