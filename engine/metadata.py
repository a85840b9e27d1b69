"""Generation metadata in PNG files: written the way other tools read it, read from theirs too.

Written: A1111's `parameters` text chunk (prompt, `Negative prompt: ...`, then one line of
`Key: value` pairs), which A1111, Forge, civitai and most viewers understand; and Easel's own
`easel` chunk holding the full request as JSON, which is what "reproduce" uses.

Read back into a `GenerationRequest`, best source first: Easel's chunk, A1111's `parameters`,
ComfyUI's `prompt` (API graph) or `workflow` (editor graph), InvokeAI's `invokeai_metadata`.
Foreign values are mapped to Easel's names and clamped into valid ranges; what cannot be mapped
is kept in `extras` so nothing is silently lost. No torch here: the app imports this at start-up.
"""

from __future__ import annotations

import io
import json
import logging
import re
from os import PathLike
from pathlib import Path
from typing import Any

from PIL import Image, PngImagePlugin

from engine.api import (
    MAX_BATCH,
    MAX_SEED,
    MAX_SIDE,
    MAX_STEPS,
    SAMPLERS,
    GenerationRequest,
    LoraRef,
    round_to_multiple,
)
from engine.errors import EaselError
from engine.paths import atomic_write_bytes

log = logging.getLogger(__name__)

EASEL_KEY = "easel"
A1111_KEY = "parameters"
VERSION = "Easel 0.1.0"


# -- writing ----------------------------------------------------------------------------------
def save_png_with_metadata(image: Image.Image, path: str | PathLike, metadata: dict) -> Path:
    """Write `image` as PNG with the A1111 and Easel chunks; atomic (never a half file)."""
    info = PngImagePlugin.PngInfo()
    info.add_text(A1111_KEY, a1111_parameters(metadata))
    info.add_text(EASEL_KEY, json.dumps(metadata, sort_keys=True, default=str))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return atomic_write_bytes(path, buffer.getvalue())


def a1111_parameters(metadata: dict) -> str:
    """The `parameters` text exactly as A1111 lays it out.

    Built from the dict itself (not a validated request), so metadata from any family (a 28x28
    GAN sample, say) still gets a readable line instead of an error.
    """
    get = metadata.get
    loras = [_lora_fields(item) for item in get("loras") or ()]
    prompt = str(get("prompt", "")) + "".join(
        f" <lora:{Path(path).stem}:{weight:g}>" for path, weight in loras if path
    )
    lines = [prompt]
    if get("negative_prompt"):
        lines.append(f"Negative prompt: {get('negative_prompt')}")
    fields: list[tuple[str, Any]] = [
        ("Steps", get("steps")),
        ("Sampler", get("sampler")),
        ("CFG scale", _number_text(get("guidance_scale"))),
        ("Seed", get("seed")),
        ("Size", f"{get('width')}x{get('height')}" if get("width") and get("height") else None),
        ("Model hash", get("model_hash") or None),
        ("Model", get("model_name") or Path(str(get("model") or "")).stem or None),
    ]
    if str(get("mode", "txt2img")) != "txt2img":
        fields.append(("Denoising strength", _number_text(get("strength"))))
    if int(get("clip_skip") or 0) > 1:
        fields.append(("Clip skip", get("clip_skip")))
    fields.append(("Version", VERSION))
    lines.append(", ".join(f"{k}: {_quote(v)}" for k, v in fields if v is not None))
    return "\n".join(lines)


def _lora_fields(item: Any) -> tuple[str, float]:
    if isinstance(item, dict):
        return str(item.get("path", "")), float(item.get("weight", 1.0))
    return str(getattr(item, "path", "")), float(getattr(item, "weight", 1.0))


def _number_text(value: Any) -> str | None:
    try:
        return f"{float(value):g}"
    except (TypeError, ValueError):
        return None


def _quote(value: Any) -> str:
    text = str(value)
    if any(ch in text for ch in ',:\n"'):
        return json.dumps(text, ensure_ascii=False)
    return text


# -- reading ----------------------------------------------------------------------------------
def read_png_text(path: str | PathLike) -> dict[str, str]:
    """Text chunks of an image file ({} when it is not a readable image)."""
    try:
        with Image.open(path) as image:
            image.load()
            return {k: v for k, v in image.info.items() if isinstance(v, str)}
    except (OSError, ValueError, SyntaxError) as exc:
        log.info("no metadata from %s: %s", path, exc)
        return {}


def read_generation_metadata(path: str | PathLike) -> GenerationRequest | None:
    """The request that made the image at `path`, from whichever tool wrote it, or None."""
    chunks = read_png_text(path)
    readers = (
        (EASEL_KEY, _from_easel),
        (A1111_KEY, parse_a1111),
        ("prompt", lambda text: parse_comfyui(text, chunks.get("workflow"))),
        ("workflow", lambda text: parse_comfyui(None, text)),
        ("invokeai_metadata", parse_invokeai),
    )
    for key, reader in readers:
        if key not in chunks:
            continue
        try:
            request = reader(chunks[key])
        except (EaselError, ValueError, TypeError, KeyError, AttributeError) as exc:
            log.info("could not read %s metadata from %s: %s", key, path, exc)
            continue
        if request is not None:
            return request
    return None


def _from_easel(text: str) -> GenerationRequest:
    data = json.loads(text)
    return GenerationRequest.from_dict(data)


def build_request(source: str, **fields: Any) -> GenerationRequest:
    """A valid request from foreign values: sizes rounded to 8, numbers clamped into range."""
    extras = dict(fields.pop("extras", {}) or {})
    extras["imported_from"] = source
    sampler = fields.get("sampler")
    if sampler is not None and sampler not in SAMPLERS:
        extras["original_sampler"] = sampler
        fields.pop("sampler")
    clamp = {
        "steps": (1, MAX_STEPS),
        "batch_size": (1, MAX_BATCH),
        "guidance_scale": (0.0, 50.0),
        "clip_skip": (0, 12),
    }
    for name, (low, high) in clamp.items():
        if fields.get(name) is not None:
            fields[name] = min(max(type(low)(fields[name]), low), high)
    if fields.get("seed") is not None:
        fields["seed"] = int(fields["seed"]) % (MAX_SEED + 1)
    if fields.get("strength") is not None:
        fields["strength"] = min(max(float(fields["strength"]), 0.01), 1.0)
    for side in ("width", "height"):
        if fields.get(side) is not None:
            fields[side] = min(round_to_multiple(max(int(fields[side]), 8)), MAX_SIDE)
    clean = {k: v for k, v in fields.items() if v is not None}
    return GenerationRequest(extras=extras, **clean)


# -- A1111 ------------------------------------------------------------------------------------
_PARAM = re.compile(r'\s*([\w][\w \-/+]*):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')
_LORA_TAG = re.compile(r"<lora:([^:>]+)(?::([+-]?[\d.]+))?[^>]*>")
_A1111_SCHEDULES = {"Karras": " Karras"}


def parse_a1111(text: str) -> GenerationRequest | None:
    lines = text.strip().split("\n")
    params = _a1111_fields(lines[-1]) if lines else {}
    if len(params) < 3:
        return None
    lines = lines[:-1]
    prompt_lines, negative_lines, in_negative = [], [], False
    for line in lines:
        if line.startswith("Negative prompt:"):
            in_negative = True
            line = line[len("Negative prompt:") :].strip()
        (negative_lines if in_negative else prompt_lines).append(line)
    prompt, loras = _take_lora_tags("\n".join(prompt_lines).strip())
    width, height = _size(params.get("Size"))
    sampler = params.get("Sampler")
    if sampler and params.get("Schedule type") in _A1111_SCHEDULES:  # A1111 1.9+ splits them
        sampler += _A1111_SCHEDULES[params["Schedule type"]]
    strength = params.get("Denoising strength")
    return build_request(
        "a1111",
        prompt=prompt,
        negative_prompt="\n".join(negative_lines).strip(),
        steps=_number(params.get("Steps"), int),
        sampler=sampler,
        guidance_scale=_number(params.get("CFG scale"), float),
        seed=_number(params.get("Seed"), int),
        width=width,
        height=height,
        strength=_number(strength, float),
        clip_skip=_number(params.get("Clip skip"), int),
        model=params.get("Model", ""),
        loras=loras,
        extras={"model_hash": params["Model hash"]} if params.get("Model hash") else {},
    )


def _a1111_fields(line: str) -> dict[str, str]:
    fields = {}
    for key, value in _PARAM.findall(line):
        value = value.strip()
        if value.startswith('"') and value.endswith('"') and len(value) >= 2:
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                value = value[1:-1]
        fields[key.strip()] = value
    return fields


def _take_lora_tags(prompt: str) -> tuple[str, tuple[LoraRef, ...]]:
    loras = tuple(
        LoraRef(path=name, weight=float(weight) if weight else 1.0)
        for name, weight in _LORA_TAG.findall(prompt)
    )
    # the tags go; the spaces around them collapse, line breaks stay
    text = re.sub(r"[ \t]{2,}", " ", _LORA_TAG.sub("", prompt))
    return re.sub(r"[ \t]+\n", "\n", text).strip(), loras


def _size(text: str | None) -> tuple[int | None, int | None]:
    match = re.fullmatch(r"\s*(\d+)\s*x\s*(\d+)\s*", text or "")
    return (int(match.group(1)), int(match.group(2))) if match else (None, None)


def _number(value: Any, kind: type):
    if value is None or value == "":
        return None
    try:
        return kind(float(value)) if kind is int else kind(value)
    except (TypeError, ValueError):
        return None


# -- ComfyUI ----------------------------------------------------------------------------------
_COMFY_SAMPLERS = {
    ("euler", ""): "Euler",
    ("euler_ancestral", ""): "Euler a",
    ("dpmpp_2m", ""): "DPM++ 2M",
    ("dpmpp_2m", "karras"): "DPM++ 2M Karras",
    ("dpmpp_sde", "karras"): "DPM++ SDE Karras",
    ("dpmpp_sde", ""): "DPM++ SDE Karras",
    ("ddim", ""): "DDIM",
    ("ddpm", ""): "DDPM",
    ("lms", ""): "LMS",
    ("uni_pc", ""): "UniPC",
    ("uni_pc_bh2", ""): "UniPC",
    ("lcm", ""): "LCM",
}
#: editor-graph widget order for the node types the reader needs
_COMFY_WIDGETS = {
    "KSampler": ["seed", None, "steps", "cfg", "sampler_name", "scheduler", "denoise"],
    "KSamplerAdvanced": [
        None,
        "noise_seed",
        None,
        "steps",
        "cfg",
        "sampler_name",
        "scheduler",
    ],
    "CLIPTextEncode": ["text"],
    "EmptyLatentImage": ["width", "height", "batch_size"],
    "CheckpointLoaderSimple": ["ckpt_name"],
    "LoraLoader": ["lora_name", "strength_model", "strength_clip"],
    "CLIPSetLastLayer": ["stop_at_clip_layer"],
}


def parse_comfyui(prompt_json: str | None, workflow_json: str | None) -> GenerationRequest | None:
    """ComfyUI metadata: the API graph (`prompt`) or, failing that, the editor graph."""
    graph = json.loads(prompt_json) if prompt_json else None
    if not isinstance(graph, dict) or not graph:
        graph = _workflow_to_graph(json.loads(workflow_json)) if workflow_json else {}
    sampler_id = next(
        (k for k, n in graph.items() if _node_type(n) in ("KSampler", "KSamplerAdvanced")), None
    )
    if sampler_id is None:
        return None
    inputs = graph[sampler_id].get("inputs", {})
    latent = _follow(graph, inputs.get("latent_image")) or {}
    sampler_name = str(inputs.get("sampler_name", ""))
    schedule = "karras" if inputs.get("scheduler") == "karras" else ""
    sampler = _COMFY_SAMPLERS.get((sampler_name, schedule)) or _COMFY_SAMPLERS.get(
        (sampler_name, "")
    )
    checkpoint, loras, clip_skip = _comfy_model_chain(graph, inputs.get("model"))
    latent_inputs = latent.get("inputs", {}) if _node_type(latent) == "EmptyLatentImage" else {}
    return build_request(
        "comfyui",
        prompt=_comfy_text(graph, inputs.get("positive")),
        negative_prompt=_comfy_text(graph, inputs.get("negative")),
        seed=_number(inputs.get("seed", inputs.get("noise_seed")), int),
        steps=_number(inputs.get("steps"), int),
        guidance_scale=_number(inputs.get("cfg"), float),
        sampler=sampler or sampler_name or None,
        strength=_number(inputs.get("denoise"), float),
        width=_number(latent_inputs.get("width"), int),
        height=_number(latent_inputs.get("height"), int),
        batch_size=_number(latent_inputs.get("batch_size"), int),
        model=checkpoint,
        loras=loras,
        clip_skip=clip_skip,
    )


def _node_type(node: Any) -> str:
    return node.get("class_type", "") if isinstance(node, dict) else ""


def _follow(graph: dict, link: Any) -> dict | None:
    """The node a `[node_id, slot]` input points at."""
    if isinstance(link, list) and link:
        return graph.get(str(link[0]))
    return None


def _comfy_text(graph: dict, link: Any, depth: int = 0) -> str:
    """Text of the CLIPTextEncode node behind a conditioning input (through simple relays)."""
    node = _follow(graph, link)
    if node is None or depth > 8:
        return ""
    inputs = node.get("inputs", {})
    for key in ("text", "text_g", "string", "value"):
        value = inputs.get(key)
        if isinstance(value, str):
            return value
        if isinstance(value, list):
            return _comfy_text(graph, value, depth + 1)
    for key in ("conditioning", "conditioning_1"):
        if key in inputs:
            return _comfy_text(graph, inputs[key], depth + 1)
    return ""


def _comfy_model_chain(graph: dict, link: Any) -> tuple[str, tuple[LoraRef, ...], int | None]:
    """Checkpoint name and LoRAs along the sampler's model input, plus CLIP skip if set."""
    checkpoint, loras, seen = "", [], 0
    node = _follow(graph, link)
    while node is not None and seen < 32:
        seen += 1
        inputs = node.get("inputs", {})
        if "lora_name" in inputs:
            weight = _number(inputs.get("strength_model"), float)
            loras.append(LoraRef(str(inputs["lora_name"]), 1.0 if weight is None else weight))
        if "ckpt_name" in inputs:
            checkpoint = str(inputs["ckpt_name"])
            break
        node = _follow(graph, inputs.get("model"))
    clip_skip = None
    for candidate in graph.values():
        if _node_type(candidate) == "CLIPSetLastLayer":
            layer = _number(candidate.get("inputs", {}).get("stop_at_clip_layer"), int)
            clip_skip = -layer if layer and layer < -1 else None
    return checkpoint, tuple(reversed(loras)), clip_skip


def _workflow_to_graph(workflow: dict) -> dict:
    """The editor graph (nodes + links + widget values) as an API-style graph."""
    links = {link[0]: link for link in workflow.get("links", []) if isinstance(link, list) and link}
    graph = {}
    for node in workflow.get("nodes", []):
        kind = node.get("type", "")
        inputs: dict[str, Any] = {}
        for slot in node.get("inputs", []) or []:
            link = links.get(slot.get("link"))
            if link is not None:
                inputs[slot["name"]] = [str(link[1]), link[2]]
        names = _COMFY_WIDGETS.get(kind, [])
        for name, value in zip(names, node.get("widgets_values", []) or [], strict=False):
            if name is not None and name not in inputs:
                inputs[name] = value
        graph[str(node.get("id"))] = {"class_type": kind, "inputs": inputs}
    return graph


# -- InvokeAI ---------------------------------------------------------------------------------
_INVOKE_SAMPLERS = {
    "euler": "Euler",
    "euler_k": "Euler",
    "euler_a": "Euler a",
    "dpmpp_2m": "DPM++ 2M",
    "dpmpp_2m_k": "DPM++ 2M Karras",
    "dpmpp_sde": "DPM++ SDE Karras",
    "dpmpp_sde_k": "DPM++ SDE Karras",
    "ddim": "DDIM",
    "ddpm": "DDPM",
    "pndm": "PNDM",
    "lms": "LMS",
    "lms_k": "LMS",
    "unipc": "UniPC",
    "unipc_k": "UniPC",
    "lcm": "LCM",
}


def parse_invokeai(text: str) -> GenerationRequest | None:
    data = json.loads(text)
    if not isinstance(data, dict) or "positive_prompt" not in data:
        return None
    scheduler = str(data.get("scheduler", ""))
    model = data.get("model") or {}
    loras = tuple(
        LoraRef(_invoke_model_name(item.get("model") or item.get("lora")), item.get("weight", 1))
        for item in data.get("loras", []) or []
        if isinstance(item, dict)
    )
    mode = str(data.get("generation_mode", ""))
    return build_request(
        "invokeai",
        prompt=str(data.get("positive_prompt", "")),
        negative_prompt=str(data.get("negative_prompt", "")),
        seed=_number(data.get("seed"), int),
        steps=_number(data.get("steps"), int),
        guidance_scale=_number(data.get("cfg_scale"), float),
        sampler=_INVOKE_SAMPLERS.get(scheduler, scheduler or None),
        width=_number(data.get("width"), int),
        height=_number(data.get("height"), int),
        strength=_number(data.get("strength"), float) if "img2img" in mode else None,
        clip_skip=_number(data.get("clip_skip"), int),
        model=_invoke_model_name(model),
        loras=loras,
    )


def _invoke_model_name(model: Any) -> str:
    if isinstance(model, dict):
        return str(model.get("name") or model.get("model_name") or model.get("key") or "")
    return str(model or "")
