"""AUTOMATIC1111's text: prompt lines, `Negative prompt: ...`, then one line of `Key: value`.

The same text arrives in a PNG `parameters` chunk, a JPEG/WebP EXIF UserComment, or hidden in
the alpha channel ("stealth"); Forge, SD.Next, Fooocus (in its A1111 mode) and civitai write it
too. It is recognised by its signature, the parameter line that starts with `Steps: N,` (every
A1111 version writes Steps first), never by any three `key: value` fragments.
"""

from __future__ import annotations

import json
import re

from engine.metadata.a1111_control import is_control_field, read_hires, read_units
from engine.metadata.common import ImportedSettings, build_imported, guarded, lora_refs, number

_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_SIGNATURE = re.compile(r"\s*Steps:\s*\d+\s*,")
LORA_TAG = re.compile(r"<lora:([^:>]+)(?::([+-]?[\d.]+))?[^>]*>")
_MAX_PARAM_LINE = 64 * 1024

#: A1111 1.9+ (sampler, schedule type) -> Easel sampler; "Automatic" is the sampler's own
_SAMPLERS = {
    ("Euler a", "Automatic"): "Euler a",
    ("Euler", "Automatic"): "Euler",
    ("DPM++ 2M", "Automatic"): "DPM++ 2M",
    ("DPM++ 2M", "Karras"): "DPM++ 2M Karras",
    ("DPM++ SDE", "Karras"): "DPM++ SDE Karras",
    ("DDIM", "Automatic"): "DDIM",
    ("DDPM", "Automatic"): "DDPM",
    ("PLMS", "Automatic"): "PNDM",
    ("LMS", "Automatic"): "LMS",
    ("UniPC", "Automatic"): "UniPC",
    ("LCM", "Automatic"): "LCM",
}
#: Easel sampler -> what A1111 1.10 writes (sampler, schedule type)
A1111_NAMES = {easel: pair for pair, easel in _SAMPLERS.items()}

#: fields Easel reads; any other is listed as not carried over
_USED = {
    "Steps", "Sampler", "Schedule type", "CFG scale", "Seed", "Size", "Model", "Model hash",
    "Denoising strength", "Clip skip", "Lora hashes", "Version", "Batch size", "Batch pos",
    "Easel", "Hashes", "TI hashes",
}  # fmt: skip


def is_a1111(text: str) -> bool:
    lines = text.strip().split("\n")
    return bool(lines) and bool(_SIGNATURE.match(lines[-1][:_MAX_PARAM_LINE]))


def split_fields(line: str) -> dict[str, str]:
    """The `Key: value` pairs of A1111's parameter line, quoted values unquoted."""
    fields: dict[str, str] = {}
    for key, value in _PARAM.findall(line[:_MAX_PARAM_LINE]):
        value = value.strip()
        if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
            try:
                value = json.loads(value)
            except ValueError:
                value = value[1:-1]
        fields.setdefault(key.strip(), str(value))
    return fields


@guarded("AUTOMATIC1111")
def parse_a1111(text: str, source: str = "AUTOMATIC1111") -> ImportedSettings | None:
    """Settings from A1111's text, or None when `text` is not A1111's."""
    if not isinstance(text, str) or not is_a1111(text):
        return None
    *lines, last = text.strip().split("\n")
    params = split_fields(last)
    prompt_lines, negative_lines, in_negative = [], [], False
    for line in lines:
        if line.startswith("Negative prompt:"):
            in_negative = True
            line = line[len("Negative prompt:") :].strip()
        (negative_lines if in_negative else prompt_lines).append(line)
    prompt = "\n".join(prompt_lines).strip()
    notes: list[str] = []
    width, height = parse_size(params.get("Size"))
    extras = _extras(params)
    hires, (width, height) = read_hires(params, (width, height), notes)
    units = read_units(params, notes)
    if units:
        extras["a1111_controlnet"] = units
    unused = sorted(key for key in params if key not in _USED and not is_control_field(key))
    if unused:
        extras["unused_fields"] = {key: params[key][:500] for key in unused[:50]}
        notes.append("Not used by Easel: " + ", ".join(unused[:12]) + ("..." * (len(unused) > 12)))
    if "Batch pos" in params:
        notes.append(
            f"Image {params['Batch pos']} of a batch of {params.get('Batch size', '?')}: "
            "its own seed is restored."
        )
    version = params.get("Version", "")
    if source == "AUTOMATIC1111" and version.startswith("Fooocus"):
        source = "Fooocus"
    return build_imported(
        source,
        prompt=prompt,
        negative_prompt="\n".join(negative_lines).strip(),
        steps=number(params.get("Steps"), int),
        sampler=easel_sampler(params.get("Sampler"), params.get("Schedule type"), notes),
        guidance_scale=number(params.get("CFG scale"), float),
        seed=number(params.get("Seed"), int),
        width=width,
        height=height,
        strength=number(params.get("Denoising strength"), float),
        clip_skip=number(params.get("Clip skip"), int),
        model=params.get("Model") or None,
        loras=lora_refs(LORA_TAG.findall(prompt)),
        hires=hires,
        extras=extras,
        notes=notes,
    )


def _extras(params: dict[str, str]) -> dict:
    extras: dict = {}
    if params.get("Model hash"):
        extras["model_hash"] = params["Model hash"][:64]
    if params.get("Lora hashes"):
        pairs = (item.rpartition(":") for item in params["Lora hashes"].split(","))
        extras["lora_hashes"] = {n.strip(): h.strip() for n, _, h in pairs if n.strip()}
    return extras


def easel_sampler(name: str | None, schedule: str | None, notes: list[str]) -> str | None:
    """Easel's sampler for A1111's name and schedule type (pre-1.9 names like
    'DPM++ 2M Karras' included); an unknown one comes back as written."""
    if not name:
        return None
    name = name.strip()
    schedule = (schedule or "").strip()
    if not schedule and name.endswith(" Karras"):  # before 1.9 the schedule was in the name
        name, schedule = name[: -len(" Karras")], "Karras"
    known = _SAMPLERS.get((name, schedule or "Automatic"))
    if known:
        return known
    near = _SAMPLERS.get((name, "Automatic")) or _SAMPLERS.get((name, "Karras"))
    if near:
        notes.append(
            f"Schedule type '{schedule}' is not one Easel has for {name}: it uses '{near}', "
            "so the picture may differ."
        )
        return near
    return f"{name} {schedule}".strip() if schedule not in ("", "Automatic") else name


def parse_size(value: str | None) -> tuple[int | None, int | None]:
    match = re.fullmatch(r"\s*(\d{1,6})\s*x\s*(\d{1,6})\s*", value or "")
    return (int(match.group(1)), int(match.group(2))) if match else (None, None)
