"""ComfyUI: the API graph (`prompt` chunk) or the editor graph (`workflow` chunk).

The settings come from the sampler that made the saved picture: the reader starts at the
SaveImage node (the last pass when there are several) and walks the graph upstream to the
nearest sampler, then from that sampler to its prompts, model, LoRAs and latent size. A value
the graph does not give (a size that comes from a loaded image) stays unknown.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from engine.metadata.chunks import load_json
from engine.metadata.common import (
    ImportedSettings,
    as_list,
    build_imported,
    guarded,
    lora_refs,
    number,
)

MAX_NODES = 5000
_SAMPLER_TYPES = {"KSampler", "KSamplerAdvanced", "SamplerCustom", "SamplerCustomAdvanced"}
_OUTPUT_TYPES = ("SaveImage", "Image Save", "SaveImageWebsocket", "PreviewImage")
_CHECKPOINT_KEYS = ("ckpt_name", "unet_name", "model_name")

#: ComfyUI sampler -> Easel sampler (schedules "normal" / "simple"); Karras handled apart
_SAMPLERS = {
    "euler": "Euler",
    "euler_ancestral": "Euler a",
    "dpmpp_2m": "DPM++ 2M",
    "ddim": "DDIM",
    "ddpm": "DDPM",
    "lms": "LMS",
    "uni_pc_bh2": "UniPC",  # diffusers' UniPC is the bh2 variant
    "lcm": "LCM",
}
_KARRAS = {"dpmpp_2m": "DPM++ 2M Karras", "dpmpp_sde": "DPM++ SDE Karras"}
_PLAIN_SCHEDULES = {"normal", "simple", ""}

#: editor-graph widget order for the node types the reader needs
_WIDGETS = {
    "KSampler": ["seed", None, "steps", "cfg", "sampler_name", "scheduler", "denoise"],
    "KSamplerAdvanced": [
        "add_noise", "noise_seed", None, "steps", "cfg", "sampler_name", "scheduler",
        "start_at_step", "end_at_step",
    ],
    "CLIPTextEncode": ["text"],
    "EmptyLatentImage": ["width", "height", "batch_size"],
    "EmptySD3LatentImage": ["width", "height", "batch_size"],
    "LatentUpscale": ["upscale_method", "width", "height", "crop"],
    "LatentUpscaleBy": ["upscale_method", "scale_by"],
    "CheckpointLoaderSimple": ["ckpt_name"],
    "CheckpointLoader": ["config_name", "ckpt_name"],
    "UNETLoader": ["unet_name"],
    "LoraLoader": ["lora_name", "strength_model", "strength_clip"],
    "LoraLoaderModelOnly": ["lora_name", "strength_model"],
    "CLIPSetLastLayer": ["stop_at_clip_layer"],
    "SaveImage": ["filename_prefix"],
    "PrimitiveNode": ["value"],
}  # fmt: skip


def is_comfyui(prompt: Any, workflow: Any) -> bool:
    nodes = prompt.values() if isinstance(prompt, dict) else ()
    if any(isinstance(n, dict) and "class_type" in n for n in nodes):
        return True
    return isinstance(workflow, dict) and isinstance(workflow.get("nodes"), list)


@guarded("ComfyUI")
def parse_comfyui(prompt_json: str | None, workflow_json: str | None) -> ImportedSettings | None:
    """Settings from ComfyUI's chunks, or None when they are not ComfyUI's or hold no sampler."""
    prompt = load_json(prompt_json, "ComfyUI prompt") if prompt_json else None
    workflow = load_json(workflow_json, "ComfyUI workflow") if workflow_json else None
    if not is_comfyui(prompt, workflow):
        return None
    graph = _api_graph(prompt) if isinstance(prompt, dict) else {}
    if not graph and isinstance(workflow, dict):
        graph = _workflow_to_graph(workflow)
    if not graph:
        return None
    sampler_id = _final_sampler(graph)
    if sampler_id is None:
        return None
    return _settings(graph, sampler_id)


def _api_graph(prompt: dict) -> dict[str, dict]:
    graph = {}
    for node_id, node in list(prompt.items())[:MAX_NODES]:
        if isinstance(node, dict) and isinstance(node.get("class_type"), str):
            inputs = node.get("inputs")
            graph[str(node_id)] = {
                "class_type": node["class_type"],
                "inputs": inputs if isinstance(inputs, dict) else {},
            }
    return graph


def _settings(graph: dict, sampler_id: str) -> ImportedSettings:
    inputs = graph[sampler_id]["inputs"]
    notes: list[str] = []
    width, height, batch = _latent_size(graph, inputs.get("latent_image"))
    positive = _texts(graph, inputs.get("positive"))
    if len(positive) > 1:
        notes.append(
            f"The prompt combines {len(positive)} texts (regions or mixes); Easel "
            "joins them into one prompt."
        )
    checkpoint, loras = _model_chain(graph, inputs.get("model"))
    denoise = number(_value(graph, inputs.get("denoise")), float)
    samplers = sum(1 for node in graph.values() if node["class_type"] in _SAMPLER_TYPES)
    if samplers > 1:
        notes.append(
            f"The graph has {samplers} samplers: these are the settings of the one that "
            "made the saved image."
        )
    return build_imported(
        "ComfyUI",
        prompt="\n".join(positive),
        negative_prompt="\n".join(_texts(graph, inputs.get("negative"))),
        seed=number(_value(graph, inputs.get("seed", inputs.get("noise_seed"))), int),
        steps=number(_value(graph, inputs.get("steps")), int),
        guidance_scale=number(_value(graph, inputs.get("cfg")), float),
        sampler=comfy_sampler(
            _value(graph, inputs.get("sampler_name")), _value(graph, inputs.get("scheduler")), notes
        ),
        strength=denoise if denoise is not None and denoise < 1 else None,
        width=width,
        height=height,
        batch_size=batch,
        model=checkpoint,
        loras=loras,
        clip_skip=_clip_skip(graph, inputs.get("positive")),
        extras={"comfyui_sampler_node": sampler_id},
        notes=notes,
    )


def comfy_sampler(name: Any, schedule: Any, notes: list[str] | None = None) -> str | None:
    """Easel's sampler for ComfyUI's sampler and scheduler names; one Easel lacks comes back
    as written (`dpmpp_2m_sde_gpu (karras)`) for the caller to flag."""
    if not isinstance(name, str) or not name:
        return None
    name = name.removeprefix("sample_")  # early ComfyUI wrote k-diffusion's function names
    schedule = schedule if isinstance(schedule, str) else ""
    if schedule == "karras" and name in _KARRAS:
        return _KARRAS[name]
    if schedule in _PLAIN_SCHEDULES and name in _SAMPLERS:
        return _SAMPLERS[name]
    near = _SAMPLERS.get(name) or _KARRAS.get(name)
    if near and notes is not None:  # the right sampler on another noise schedule
        notes.append(f"Schedule '{schedule}' is not one Easel has for {name}: it uses "
                     f"'{near}', so the picture may differ.")  # fmt: skip
        return near
    return f"{name} ({schedule})" if schedule else name  # kept as written, flagged unknown


# -- walking the graph ------------------------------------------------------------------------
def _node(graph: dict, link: Any) -> tuple[str, dict] | None:
    """The node a `[node_id, slot]` input points at."""
    if isinstance(link, list) and link and isinstance(link[0], (str, int)):
        node_id = str(link[0])
        node = graph.get(node_id)
        return (node_id, node) if node is not None else None
    return None


def _upstream(graph: dict, node_id: str):
    """Nodes feeding `node_id`, nearest first (breadth first, each node once)."""
    seen, queue = {node_id}, deque([node_id])
    while queue:
        current = queue.popleft()
        for value in graph[current]["inputs"].values():
            found = _node(graph, value)
            if found and found[0] not in seen:
                seen.add(found[0])
                queue.append(found[0])
                yield found


def _final_sampler(graph: dict) -> str | None:
    """The sampler behind the saved image: from each output node, the nearest sampler
    upstream; of several outputs, the one with the most sampling passes behind it."""
    best: tuple[int, str] | None = None
    outputs = [i for kind in _OUTPUT_TYPES for i, n in graph.items() if n["class_type"] == kind]
    for output_id in outputs:
        samplers = [i for i, n in _upstream(graph, output_id) if n["class_type"] in _SAMPLER_TYPES]
        if samplers and (best is None or len(samplers) > best[0]):
            best = (len(samplers), samplers[0])
    if best:
        return best[1]
    # no output node (a trimmed graph): the sampler no other sampler consumes
    return next((i for i, n in graph.items() if n["class_type"] in _SAMPLER_TYPES), None)


def _value(graph: dict, value: Any, depth: int = 0) -> Any:
    """A widget value, following a link to a primitive node when the input was converted."""
    found = _node(graph, value)
    if found is None or depth > 8:
        return None if isinstance(value, list) else value
    inputs = found[1]["inputs"]
    for key in ("value", "seed", "noise_seed", "int", "float", "string", "text", "number"):
        if key in inputs:
            return _value(graph, inputs[key], depth + 1)
    return None


def _texts(graph: dict, link: Any) -> list[str]:
    """Texts of the encoders behind a conditioning input, through combines and area nodes."""
    texts: list[str] = []
    start = _node(graph, link)
    if start is None:
        return texts
    nodes = [start, *_upstream(graph, start[0])]
    for _, node in nodes:
        inputs = node["inputs"]
        if "clip" not in inputs and "text" not in inputs and "text_g" not in inputs:
            continue
        for key in ("text", "text_g", "prompt"):
            value = _value(graph, inputs.get(key)) if key in inputs else None
            if isinstance(value, str) and value.strip():
                texts.append(value.strip())
                break
    return texts


def _model_chain(graph: dict, link: Any) -> tuple[str | None, tuple]:
    """Checkpoint name and LoRAs (in load order) along the sampler's model input."""
    checkpoint, loras = None, []
    found, steps = _node(graph, link), 0
    while found is not None and steps < 64:
        steps += 1
        inputs = found[1]["inputs"]
        if isinstance(inputs.get("lora_name"), str):
            loras.append((inputs["lora_name"], inputs.get("strength_model")))
        names = [inputs[k] for k in _CHECKPOINT_KEYS if isinstance(inputs.get(k), str)]
        if names:
            checkpoint = names[0]
            break
        found = _node(graph, inputs.get("model"))
    return checkpoint, lora_refs(reversed(loras))


def _latent_size(graph: dict, link: Any) -> tuple[int | None, int | None, int | None]:
    """Width, height and batch of the latent a sampler starts from, when the graph sets them."""
    scale, found, steps = 1.0, _node(graph, link), 0
    while found is not None and steps < 64:
        steps += 1
        kind, inputs = found[1]["class_type"], found[1]["inputs"]
        width = number(_value(graph, inputs.get("width")), int)
        height = number(_value(graph, inputs.get("height")), int)
        if width and height and kind != "ConditioningSetArea":
            batch = number(_value(graph, inputs.get("batch_size")), int)
            return round(width * scale), round(height * scale), batch
        factor = number(_value(graph, inputs.get("scale_by")), float)
        if factor:
            scale *= factor
        if kind in ("VAEEncode", "VAEEncodeForInpaint"):
            return None, None, None  # the size is the loaded image's
        found = _node(
            graph, inputs.get("samples", inputs.get("latent", inputs.get("latent_image")))
        )
    return None, None, None


def _clip_skip(graph: dict, positive: Any) -> int | None:
    """A1111-style CLIP skip from a CLIPSetLastLayer on the prompt's CLIP path."""
    start = _node(graph, positive)
    if start is None:
        return None
    for _, node in [start, *_upstream(graph, start[0])]:
        if node["class_type"] == "CLIPSetLastLayer":
            layer = number(_value(graph, node["inputs"].get("stop_at_clip_layer")), int)
            return -layer if layer is not None and layer < -1 else None
    return None


# -- the editor graph -------------------------------------------------------------------------
def _links(workflow: dict) -> dict[Any, tuple[Any, Any]]:
    """link id -> (source node id, source slot); both the list and the object link forms."""
    links = {}
    for link in as_list(workflow.get("links")):
        if isinstance(link, list) and len(link) >= 3 and isinstance(link[0], int):
            links[link[0]] = (link[1], link[2])
        elif isinstance(link, dict) and isinstance(link.get("id"), int):
            links[link["id"]] = (link.get("origin_id"), link.get("origin_slot"))
    return links


def _workflow_to_graph(workflow: dict) -> dict[str, dict]:
    """The editor graph (nodes + links + widget values) as an API-style graph; muted and
    bypassed nodes (mode 2 and 4) take no part, as in ComfyUI's own prompt."""
    links = _links(workflow)
    graph = {}
    nodes = workflow.get("nodes")
    for node in (nodes if isinstance(nodes, list) else [])[:MAX_NODES]:
        if not isinstance(node, dict) or node.get("mode") in (2, 4):
            continue
        kind = node.get("type")
        if not isinstance(kind, str):
            continue
        inputs: dict[str, Any] = {}
        for slot in as_list(node.get("inputs")):
            if isinstance(slot, dict) and isinstance(slot.get("name"), str):
                link = slot.get("link")
                source = links.get(link) if isinstance(link, int) else None
                if source is not None and isinstance(source[0], (int, str)):
                    inputs[slot["name"]] = [str(source[0]), source[1]]
        values = node.get("widgets_values")
        names = _WIDGETS.get(kind, [])
        if isinstance(values, list):
            for name, value in zip(names, values, strict=False):
                if name is not None and name not in inputs:
                    inputs[name] = value
        graph[str(node.get("id"))] = {"class_type": kind, "inputs": inputs}
    return graph
