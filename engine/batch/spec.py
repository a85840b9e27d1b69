"""Batch specs: a JSONL file of requests or a small TOML/YAML grid, expanded into requests.

A JSONL spec holds one Easel request per line, as `GenerationRequest.to_dict()`, PNG metadata
(Easel's `easel` chunk) and gallery history write it; blank lines and `#` comments are skipped.
A grid spec is TOML (or YAML when PyYAML is installed): top-level keys are the request fields
every image shares, and `[grid]` names the axes to multiply, models outermost so that a worker
loads each model once:

    steps = 4
    width = 64
    height = 64
    [grid]
    models = ["builtin:emoji-ldm"]
    prompts = ["a red apple", "a rocket"]
    seeds = "1-8"            # or [1, 2, 3], or {start = 1, count = 8}
    samplers = ["DDIM"]
    guidance = [3.0, 5.0]

Every batch item makes one image: a request with `batch_size` N becomes N items with seeds
seed..seed+N-1, which is what `easel generate --batch N` draws too. Each item's key is a hash of
what decides its pixels (the request without its runtime options), which is how a rerun
recognises the images it already made.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.api import MAX_SEED, GenerationRequest
from engine.errors import EaselError, InputError

#: grid axis name -> request field; the plural and singular spellings both work
AXES: dict[str, str] = {
    "models": "model",
    "model": "model",
    "samplers": "sampler",
    "sampler": "sampler",
    "guidance": "guidance_scale",
    "guidance_scale": "guidance_scale",
    "cfg": "guidance_scale",
    "steps": "steps",
    "prompts": "prompt",
    "prompt": "prompt",
    "seeds": "seed",
    "seed": "seed",
}
#: expansion order: outermost first (models outermost: one load per model per worker)
AXIS_ORDER = ("model", "sampler", "guidance_scale", "steps", "prompt", "seed")
#: a grid larger than this is almost certainly a typo in a seed range
MAX_ITEMS = 1_000_000
#: history/metadata keys that are not request fields but say what really ran
_SEED_USED = "seed_used"


@dataclass(frozen=True)
class BatchItem:
    """One image to make: its place in the spec, its request (batch size 1) and its key."""

    index: int
    request: GenerationRequest
    key: str

    @property
    def file_name(self) -> str:
        return f"{self.index:05d}-{self.key[:12]}.png"


def request_key(request: GenerationRequest) -> str:
    """SHA-256 of what decides the pixels: every field but the runtime options (device, threads
    and memory options change how fast an image comes, not which image)."""
    data = request.to_dict()
    data.pop("runtime", None)
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def load_spec(path: str | Path) -> list[BatchItem]:
    """The items a spec file describes, in spec order, each request once (duplicates dropped)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"The batch spec '{path}' does not exist. Check the path.")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"The batch spec '{path}' could not be read ({exc}).") from exc
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        requests = parse_jsonl(text, source=str(path))
    elif suffix == ".toml":
        requests = expand_grid(_parse_toml(text, path))
    elif suffix in (".yaml", ".yml"):
        requests = expand_grid(_parse_yaml(text, path))
    else:
        raise InputError(
            f"'{path.name}' is not a batch spec Easel reads: use a .jsonl file of requests, or a "
            ".toml (or .yaml) grid."
        )
    return items_from_requests(requests)


def items_from_requests(requests: list[GenerationRequest]) -> list[BatchItem]:
    """One item per image (batch sizes split into seeds), duplicates dropped, numbered."""
    items: list[BatchItem] = []
    seen: set[str] = set()
    for request in requests:
        for single in split_batch(request):
            key = request_key(single)
            if key in seen:
                continue
            seen.add(key)
            items.append(BatchItem(len(items), single, key))
    if not items:
        raise InputError("The batch spec holds no requests.")
    return items


def split_batch(request: GenerationRequest) -> list[GenerationRequest]:
    """A request for N images as N one-image requests with seeds seed+i, as a batch draws them."""
    if request.batch_size == 1:
        return [request]
    return [
        request.replace(seed=(request.seed + i) % (MAX_SEED + 1), batch_size=1)
        for i in range(request.batch_size)
    ]


# -- JSONL ------------------------------------------------------------------------------------
def parse_jsonl(text: str, *, source: str = "the spec") -> list[GenerationRequest]:
    requests = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{source}, line {number}: not valid JSON ({exc.msg}).") from exc
        if not isinstance(data, dict):
            raise InputError(f"{source}, line {number}: expected a JSON object (a request).")
        requests.append(_request_from_record(data, f"{source}, line {number}"))
    return requests


def _request_from_record(data: dict[str, Any], where: str) -> GenerationRequest:
    kind = data.get("type", GenerationRequest.type_name)
    if kind != GenerationRequest.type_name:
        raise InputError(f"{where}: a batch makes images; a '{kind}' request cannot be batched.")
    fields = dict(data)
    if _SEED_USED in fields:  # history/metadata of a random-seed run: the seed actually drawn
        fields["seed"] = fields[_SEED_USED]
    try:
        return GenerationRequest.from_dict(fields)
    except EaselError as exc:
        raise InputError(f"{where}: {exc}") from exc


# -- grids ------------------------------------------------------------------------------------
def _parse_toml(text: str, path: Path) -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"'{path.name}' is not valid TOML ({exc}).") from exc


def _parse_yaml(text: str, path: Path) -> dict:
    try:
        import yaml
    except ModuleNotFoundError:
        raise InputError(
            f"'{path.name}' is YAML, and PyYAML is not installed: `pip install pyyaml`, or write "
            "the same grid as TOML (same keys)."
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InputError(f"'{path.name}' is not valid YAML ({exc}).") from exc
    if not isinstance(data, dict):
        raise InputError(f"'{path.name}' must be a mapping of settings with a 'grid' section.")
    return data


def expand_grid(spec: dict[str, Any]) -> list[GenerationRequest]:
    """Every combination of the grid's axes over the shared settings, models outermost."""
    base = {k: v for k, v in spec.items() if k != "grid"}
    grid = spec.get("grid", {})
    if not isinstance(grid, dict):
        raise InputError("'grid' must be a table of axes, e.g. prompts = [...], seeds = '1-8'.")
    axes: dict[str, list] = {}
    for name, values in grid.items():
        if name not in AXES:
            known = ", ".join(sorted(set(AXES)))
            raise InputError(f"Unknown grid axis '{name}'. Axes: {known}.")
        field_name = AXES[name]
        axes[field_name] = seed_values(values) if field_name == "seed" else _listed(name, values)
    ordered = [(f, axes[f]) for f in AXIS_ORDER if f in axes]
    total = 1
    for _, values in ordered:
        total *= len(values)
    if total > MAX_ITEMS:
        raise InputError(f"The grid makes {total:,} images, more than {MAX_ITEMS:,}; split it.")
    requests = []
    for combination in itertools.product(*(values for _, values in ordered)):
        fields = {**base, **{f: v for (f, _), v in zip(ordered, combination, strict=True)}}
        requests.append(_request_from_record(fields, "the grid"))
    return requests


def _listed(name: str, values: Any) -> list:
    values = values if isinstance(values, list) else [values]
    if not values:
        raise InputError(f"Grid axis '{name}' is empty; give at least one value.")
    return values


def seed_values(value: Any) -> list[int]:
    """Seeds as a list, a "first-last" range, or {start, count}."""
    if isinstance(value, dict):
        try:
            start, count = int(value["start"]), int(value["count"])
        except (KeyError, TypeError, ValueError):
            raise InputError("Seeds as a table need integer 'start' and 'count'.") from None
        return _checked_seeds(list(range(start, start + count)))
    if isinstance(value, str):
        first, sep, last = value.partition("-")
        try:
            low, high = int(first), int(last) if sep else int(first)
        except ValueError:
            raise InputError(f"Seed range '{value}' must look like '1-100'.") from None
        if high < low:
            raise InputError(f"Seed range '{value}' ends before it starts.")
        return _checked_seeds(list(range(low, high + 1)))
    return _checked_seeds([int(v) for v in _listed("seeds", value)])


def _checked_seeds(seeds: list[int]) -> list[int]:
    if not seeds:
        raise InputError("The seed axis is empty; give at least one seed.")
    if len(seeds) > MAX_ITEMS:
        raise InputError(f"{len(seeds):,} seeds is more than a batch takes ({MAX_ITEMS:,}).")
    bad = [s for s in seeds if not 0 <= s <= MAX_SEED]
    if bad:
        raise InputError(f"Seed {bad[0]} is out of range (0 to {MAX_SEED}).")
    return seeds


def write_jsonl(path: str | Path, requests: list[GenerationRequest]) -> Path:
    """Write requests as a JSONL spec (atomically): what the desktop Batch dialog saves."""
    from engine.paths import atomic_write_text

    lines = [json.dumps(r.to_dict(), sort_keys=True) for r in requests]
    return atomic_write_text(path, "\n".join(lines) + "\n")
