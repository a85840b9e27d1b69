"""InvokeAI, all three generations of its metadata.

- 3.x and later: `invokeai_metadata`, one flat JSON object (`positive_prompt`, `seed`, ...).
- 2.x: `sd-metadata`, JSON with an `image` object whose prompt holds `[negative]` in brackets.
- 1.x / 2.x command line: `Dream`, the `"prompt [negative]" -s 50 -S 1234 ...` line it ran.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

from engine.metadata.chunks import load_json
from engine.metadata.common import (
    ImportedSettings,
    as_list,
    build_imported,
    guarded,
    lora_refs,
    number,
    text,
)

#: scheduler -> (Easel sampler, exact); inexact ones are the nearest Easel has, with a note
_SCHEDULERS = {
    "euler": ("Euler", True),
    "k_euler": ("Euler", True),
    "euler_a": ("Euler a", True),
    "k_euler_a": ("Euler a", True),
    "k_euler_ancestral": ("Euler a", True),
    "dpmpp_2m": ("DPM++ 2M", True),
    "k_dpmpp_2": ("DPM++ 2M", True),
    "dpmpp_2m_k": ("DPM++ 2M Karras", True),
    "dpmpp_sde_k": ("DPM++ SDE Karras", True),
    "ddim": ("DDIM", True),
    "ddpm": ("DDPM", True),
    "pndm": ("PNDM", True),
    "plms": ("PNDM", True),
    "lms": ("LMS", True),
    "k_lms": ("LMS", True),
    "unipc": ("UniPC", True),
    "lcm": ("LCM", True),
    "euler_k": ("Euler", False),
    "dpmpp_sde": ("DPM++ SDE Karras", False),
    "lms_k": ("LMS", False),
    "unipc_k": ("UniPC", False),
}
_DREAM = re.compile(r'^\s*"((?:\\.|[^"\\])*)"\s+(-\S.*)$', re.DOTALL)
_DREAM_FLAGS = {
    "-s": "steps",
    "--steps": "steps",
    "-S": "seed",
    "--seed": "seed",
    "-W": "width",
    "--width": "width",
    "-H": "height",
    "--height": "height",
    "-C": "cfg_scale",
    "--cfg_scale": "cfg_scale",
    "-A": "sampler",
    "--sampler": "sampler",
    "-f": "strength",
    "--strength": "strength",
}
_MAX_DREAM = 64 * 1024


def _sampler(name: Any, notes: list[str]) -> str | None:
    if not isinstance(name, str) or not name:
        return None
    easel, exact = _SCHEDULERS.get(name.lower(), (name, True))
    if not exact:
        notes.append(f"Scheduler '{name}' is not one Easel has: it uses the nearest, '{easel}'.")
    return easel


def _split_negative(prompt: str) -> tuple[str, str]:
    """InvokeAI 2's `[negative]` syntax: bracketed parts are the negative prompt."""
    negatives = re.findall(r"\[([^\[\]]*)\]", prompt)
    positive = re.sub(r"\s*\[[^\[\]]*\]", "", prompt)
    return positive.strip(), ", ".join(part.strip() for part in negatives)


def _model_name(model: Any) -> str | None:
    if isinstance(model, dict):
        for key in ("name", "model_name", "key"):
            if isinstance(model.get(key), str) and model[key]:
                return model[key]
        return None
    return model if isinstance(model, str) and model else None


# -- 3.x+ ---------------------------------------------------------------------------------------
@guarded("InvokeAI")
def parse_invokeai(text_: str) -> ImportedSettings | None:
    """`invokeai_metadata` (InvokeAI 3 and later), or None when it is not that."""
    data = load_json(text_, "InvokeAI metadata")
    if not isinstance(data, dict) or "positive_prompt" not in data:
        return None
    notes: list[str] = []
    loras = []
    for item in as_list(data.get("loras")):
        if isinstance(item, dict):
            loras.append((_model_name(item.get("model") or item.get("lora")), item.get("weight")))
    mode = str(data.get("generation_mode", ""))
    return build_imported(
        "InvokeAI",
        prompt=text(data.get("positive_prompt")),
        negative_prompt=text(data.get("negative_prompt")),
        seed=number(data.get("seed"), int),
        steps=number(data.get("steps"), int),
        guidance_scale=number(data.get("cfg_scale"), float),
        sampler=_sampler(data.get("scheduler"), notes),
        width=number(data.get("width"), int),
        height=number(data.get("height"), int),
        strength=number(data.get("strength"), float) if "img2img" in mode else None,
        clip_skip=number(data.get("clip_skip"), int),
        model=_model_name(data.get("model")),
        loras=lora_refs(loras),
        notes=notes,
    )


# -- 2.x sd-metadata ----------------------------------------------------------------------------
@guarded("InvokeAI")
def parse_sd_metadata(text_: str) -> ImportedSettings | None:
    """`sd-metadata` (InvokeAI 2.x), or None when it is not that."""
    data = load_json(text_, "InvokeAI sd-metadata")
    if not isinstance(data, dict) or not isinstance(data.get("image"), dict):
        return None
    image = data["image"]
    prompt = image.get("prompt")
    if isinstance(prompt, list):  # [{"prompt": ..., "weight": ...}, ...]
        prompt = " ".join(
            p["prompt"] for p in prompt if isinstance(p, dict) and text(p.get("prompt"))
        )
    positive, negative = _split_negative(prompt) if isinstance(prompt, str) else (None, None)
    notes: list[str] = []
    extras = {"model_hash": data["model_hash"][:64]} if text(data.get("model_hash")) else {}
    return build_imported(
        "InvokeAI",
        prompt=positive,
        negative_prompt=negative,
        seed=number(image.get("seed"), int),
        steps=number(image.get("steps"), int),
        guidance_scale=number(image.get("cfg_scale"), float),
        sampler=_sampler(image.get("sampler"), notes),
        width=number(image.get("width"), int),
        height=number(image.get("height"), int),
        strength=number(image.get("strength"), float) if image.get("type") == "img2img" else None,
        model=text(data.get("model_weights")) or None,
        extras=extras,
        notes=notes,
    )


# -- Dream command line -------------------------------------------------------------------------
def is_dream(text_: str) -> bool:
    return isinstance(text_, str) and bool(_DREAM.match(text_[:_MAX_DREAM]))


@guarded("InvokeAI")
def parse_dream(text_: str) -> ImportedSettings | None:
    """InvokeAI's `Dream` line, or None when it is not one."""
    match = _DREAM.match(text_[:_MAX_DREAM]) if isinstance(text_, str) else None
    if match is None:
        return None
    try:
        words = shlex.split(match.group(2))
    except ValueError:
        words = match.group(2).split()
    values: dict[str, str] = {}
    unused: list[str] = []
    for index, word in enumerate(words):
        if word.startswith("-") and index + 1 < len(words):
            name = _DREAM_FLAGS.get(word)
            if name:
                values[name] = words[index + 1]
            elif not word.lstrip("-").replace(".", "").isdigit():
                unused.append(word.lstrip("-"))
    positive, negative = _split_negative(match.group(1).replace('\\"', '"'))
    notes = [f"Not used by Easel: {', '.join(unused[:12])}"] if unused else []
    return build_imported(
        "InvokeAI",
        prompt=positive,
        negative_prompt=negative,
        seed=number(values.get("seed"), int),
        steps=number(values.get("steps"), int),
        guidance_scale=number(values.get("cfg_scale"), float),
        sampler=_sampler(values.get("sampler"), notes),
        width=number(values.get("width"), int),
        height=number(values.get("height"), int),
        strength=number(values.get("strength"), float),
        notes=notes,
    )
