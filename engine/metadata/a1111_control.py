"""ControlNet units, image prompts and the hires fix in A1111's `parameters` text (no torch).

Written the way A1111's ControlNet extension (Mikubill/sd-webui-controlnet, `infotext.py`) writes
a unit: `ControlNet 0: "Module: canny, Model: name [hash], Weight: 0.8, Resize Mode: Just
Resize, Processor Res: 512, Threshold A: 100, Threshold B: 200, Guidance Start: 0, Guidance End:
1, Pixel Perfect: False, Control Mode: Balanced"`. An IP-Adapter is a unit there too (module
`ip-adapter_clip_sd15`/`_sdxl`). The hires fix is A1111's own: `Size` is the first pass,
`Hires upscale`, `Hires steps` (when set), `Hires upscaler`, `Denoising strength`.

Reading back: the hires fix becomes the request's `hires` (and its final size); ControlNet units
cannot, because A1111 never stores the control image, so they are kept in
`extras["a1111_controlnet"]` (module mapped to Easel's preprocessor, model, weight, range, guess
mode) for the Control panel to prefill, with a note saying the images are to be added.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

#: Easel preprocessor -> A1111 module name (the closest one the extension has)
A1111_MODULES = {
    "none": "none",
    "canny": "canny",
    "softedge": "softedge_hed",
    "lineart": "lineart_standard",
    "scribble": "invert",
    "depth": "depth_anything",
}
#: A1111 module name prefixes -> Easel preprocessor (first match wins)
_MODULE_PREFIXES = (
    ("canny", "canny"),
    ("softedge", "softedge"),
    ("hed", "softedge"),
    ("pidinet", "softedge"),
    ("lineart", "lineart"),
    ("invert", "scribble"),
    ("scribble", "scribble"),
    ("depth", "depth"),
    ("none", "none"),
)
CONTROL_MODES = {False: "Balanced", True: "ControlNet is more important"}
LATENT_UPSCALER = "Latent (bicubic)"
HIRES_FIELDS = {"Hires upscale", "Hires steps", "Hires upscaler", "Hires resize"}
_UNIT_KEY = re.compile(r"ControlNet \d+$")


# -- writing ------------------------------------------------------------------------------
def control_fields(metadata: dict) -> list[tuple[str, Any]]:
    """`ControlNet N` fields for the control units, then the image prompts."""
    fields = []
    units = _dicts(metadata.get("control"))
    width, height = metadata.get("width"), metadata.get("height")
    resolution = int(max(_float(width, 512.0), _float(height, 512.0)))
    for unit in units:
        preprocessor = str(unit.get("preprocessor", "none"))
        options = unit.get("options") if isinstance(unit.get("options"), dict) else {}
        parts = [
            ("Module", A1111_MODULES.get(preprocessor, preprocessor)),
            ("Model", _model_label(str(unit.get("model", "")))),
            ("Weight", _num(unit.get("weight", 1.0))),
            ("Resize Mode", "Just Resize"),
            ("Processor Res", resolution),
        ]
        if preprocessor == "canny":
            parts += [
                ("Threshold A", _num(options.get("low", 100))),
                ("Threshold B", _num(options.get("high", 200))),
            ]
        parts += [
            ("Guidance Start", _num(unit.get("start", 0.0))),
            ("Guidance End", _num(unit.get("end", 1.0))),
            ("Pixel Perfect", "False"),
            ("Control Mode", CONTROL_MODES[bool(unit.get("guess_mode"))]),
        ]
        fields.append(parts)
    base = "sdxl" if str(metadata.get("base_model", "")) == "sdxl" else "sd15"
    for prompt in _dicts(metadata.get("image_prompts")):
        fields.append(
            [
                ("Module", f"ip-adapter_clip_{base}"),
                ("Model", _model_label(str(prompt.get("model", "")) or f"ip-adapter_{base}")),
                ("Weight", _num(prompt.get("weight", 0.6))),
                ("Resize Mode", "Just Resize"),
                ("Guidance Start", "0"),
                ("Guidance End", "1"),
                ("Pixel Perfect", "False"),
                ("Control Mode", "Balanced"),
            ]
        )
    return [
        (f"ControlNet {index}", ", ".join(f"{k}: {_clean(v)}" for k, v in parts))
        for index, parts in enumerate(fields)
    ]


def hires_fields(metadata: dict) -> list[tuple[str, Any]]:
    hires = metadata.get("hires")
    if not isinstance(hires, dict):
        return []
    scale = _float(hires.get("scale"), 2.0) or 2.0
    fields: list[tuple[str, Any]] = [("Denoising strength", _num(hires.get("strength", 0.5)))]
    fields.append(("Hires upscale", _num(scale)))
    first = first_pass_size(metadata.get("width"), metadata.get("height"), scale)
    final = (metadata.get("width"), metadata.get("height"))
    if first and (round(first[0] * scale), round(first[1] * scale)) != final:
        fields.append(("Hires resize", f"{final[0]}x{final[1]}"))
    steps = int(_float(hires.get("steps"), 0.0))
    if steps:
        fields.append(("Hires steps", steps))
    upscaler = str(hires.get("upscaler") or "latent")
    names = {"latent": LATENT_UPSCALER, "lanczos": "Lanczos"}
    fields.append(("Hires upscaler", names.get(upscaler) or _stem(upscaler)))
    return fields


def first_pass_size(width: Any, height: Any, scale: Any) -> tuple[int, int] | None:
    """The first pass's size for a final size and hires scale (multiples of 8, as SD needs)."""
    try:
        width, height, scale = int(width), int(height), float(scale)
    except (TypeError, ValueError, OverflowError):
        return None
    if not 0 < scale < 1e6:
        return None
    return (max(8, round(width / scale / 8) * 8), max(8, round(height / scale / 8) * 8))


def _dicts(value: Any) -> list[dict]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _stem(path: str) -> str:
    name = Path(path).name
    return Path(name).stem if Path(name).suffix.lower() in {".safetensors", ".pth", ".pt"} else name


def _model_label(reference: str) -> str:
    """`name [hash8]` as the extension writes a model (hash when the file's is cached)."""
    name = _stem(reference)
    digest = _short_hash(reference)
    return f"{name} [{digest}]" if digest else name


def _short_hash(reference: str) -> str:
    path = Path(reference)
    if not path.is_file():
        return ""
    try:
        from engine.library.hashing import HashCache

        return HashCache().sha256(path)[:8]
    except Exception:  # noqa: BLE001 - a nicety: the text is written without the hash
        return ""


def _clean(value: Any) -> str:
    # the extension refuses values with commas or colons: they would split the unit text
    return str(value).replace(",", "").replace(":", "")


def _num(value: Any) -> str:
    try:
        return f"{float(value):g}"
    except (TypeError, ValueError):
        return "0"


# -- reading ------------------------------------------------------------------------------
def is_control_field(key: str) -> bool:
    return bool(_UNIT_KEY.match(key)) or key in HIRES_FIELDS


def read_units(params: dict[str, str], notes: list[str]) -> list[dict]:
    """The ControlNet units of an A1111 text as plain dicts (no images: A1111 keeps none)."""
    units = []
    for key in sorted((k for k in params if _UNIT_KEY.match(k)), key=lambda k: int(k.split()[1])):
        values = _unit_values(params[key])
        module = values.get("Module", "none")
        unit = {
            "module": module,
            "model": values.get("Model", "").split(" [")[0].strip(),
            "weight": _float(values.get("Weight"), 1.0),
            "start": _float(values.get("Guidance Start"), 0.0),
            "end": _float(values.get("Guidance End"), 1.0),
        }
        if module.startswith("ip-adapter"):
            unit["kind"] = "image_prompt"
        else:
            unit.update(kind="control", preprocessor=_preprocessor(module))
            unit["guess_mode"] = values.get("Control Mode") == CONTROL_MODES[True]
            if unit["preprocessor"] == "canny":
                unit["options"] = {
                    "low": _float(values.get("Threshold A"), 100.0),
                    "high": _float(values.get("Threshold B"), 200.0),
                }
        units.append(unit)
    if units:
        notes.append(
            f"{len(units)} ControlNet unit(s) ({', '.join(u['module'] for u in units)}): the "
            "control images are not stored in A1111 files; add them in the Control panel."
        )
    return units


def read_hires(params: dict[str, str], size: tuple, notes: list[str]) -> tuple[dict | None, tuple]:
    """(hires fields for `HiresFix`, the final size) from A1111's hires fields, if any."""
    if "Hires upscale" not in params and "Hires resize" not in params:
        return None, size
    scale = _float(params.get("Hires upscale"), 2.0)
    width, height = size
    resize = re.fullmatch(r"\s*(\d{1,5})\s*x\s*(\d{1,5})\s*", params.get("Hires resize", ""))
    if resize and int(resize.group(1)) and int(resize.group(2)):
        final = (int(resize.group(1)), int(resize.group(2)))
        if width:
            scale = final[0] / width
    elif width and height:
        final = (round(width * scale), round(height * scale))
    else:
        final = size
    upscaler = params.get("Hires upscaler", "Latent").strip()
    if upscaler.lower().startswith("latent"):
        upscaler = "latent"
    elif upscaler.lower() == "lanczos":
        upscaler = "lanczos"  # a plain resize: Easel's own, no model needed
    else:
        notes.append(
            f"Hires upscaler '{upscaler}' is used if the library has an upscaler by that name."
        )
    hires = {
        "scale": min(max(scale, 1.01), 4.0),
        "strength": _float(params.get("Denoising strength"), 0.5),
        "upscaler": upscaler,
        "steps": int(_float(params.get("Hires steps"), 0)),
    }
    return hires, final


def _unit_values(text: str) -> dict[str, str]:
    values = {}
    for item in text.split(","):
        key, _, value = item.strip().partition(": ")
        if key:
            values[key.strip()] = value.strip()
    return values


def _preprocessor(module: str) -> str:
    for prefix, name in _MODULE_PREFIXES:
        if module.startswith(prefix):
            return name
    return "none"


def _float(value: Any, default: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return default
    return number if number == number and abs(number) < 1e12 else default  # NaN, inf
