"""How a model is placed: on the device, model offload or sequential offload, from its size.

Sizes are the model's real ones, read before loading from the safetensors headers of each
component (elements x the bytes of the dtype it will run in; GGUF files count as stored, since
their weights stay quantised in memory). The rules, for `Offload.AUTO`:

- on a GPU: everything fits the VRAM budget -> no offload; the largest component fits ->
  model offload (one component on the GPU at a time, about 1.2x slower); else sequential
  offload (layer by layer, several times slower). Offloaded weights wait in RAM, so RAM must
  hold the whole model, else the job stops with how much is needed.
- on the CPU (and MPS, which shares memory) offload cannot help: the model must fit the RAM
  the machine has free, else the job stops with how much is needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engine.api import Offload
from engine.errors import ModelError

GIB = 1024**3
#: activations, the VAE decode and torch's own allocations beyond the weights
HEADROOM = 1.2
#: free RAM under this many times the weights counts as short: the text encoders are then freed
#: after encoding (engine/sd/text_encoder_release.py), which lowers the UNet/VAE phase's peak
SHORT_RAM = 2.0
_DTYPE_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2}
_FLOAT_DTYPES = {"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"}


@dataclass(frozen=True)
class MemoryPlan:
    offload: Offload
    model_bytes: int  # all components in the compute dtype
    largest_bytes: int  # the largest component (what model offload keeps on the GPU)
    why: str  # shown to the user in the Result info and the status bar
    free_text_encoder: bool = False  # RAM is short: drop the text encoders after encoding

    def describe(self) -> str:
        return f"{self.offload.value} ({self.why})"

    def loading_stage(self) -> str:
        """The progress stage the app's status bar shows while the model loads."""
        if self.offload in {Offload.NONE, Offload.AUTO}:
            return "loading model"
        return f"loading model with {self.offload.value} offload: {self.why}"


def choose_offload(
    requested: Offload,
    device_type: str,
    components: dict[str, int],
    *,
    vram_bytes: int | None,
    ram_bytes: int | None,
) -> MemoryPlan:
    """The placement for a model of `components` (bytes each) on `device_type`."""
    total = sum(components.values())
    largest = max(components.values(), default=0)
    if device_type != "cuda":
        _check_fits(total, ram_bytes, "memory (RAM)")
        manual = requested in {Offload.MODEL, Offload.SEQUENTIAL}
        why = "offload only helps a GPU" if manual else f"{_gb(total)} on the {device_type}"
        short = ram_bytes is not None and total * SHORT_RAM > ram_bytes
        if short:
            why += f"; RAM is short ({_gb(ram_bytes)} free): text encoder freed after encoding"
        return MemoryPlan(Offload.NONE, total, largest, why, free_text_encoder=short)
    if requested is not Offload.AUTO:
        if requested is not Offload.NONE:
            _check_fits(total, ram_bytes, "memory (RAM) to offload to")
        return MemoryPlan(requested, total, largest, "chosen in Settings")
    if vram_bytes is None or total * HEADROOM <= vram_bytes:
        return MemoryPlan(Offload.NONE, total, largest, f"{_gb(total)} fits in VRAM")
    _check_fits(total, ram_bytes, "memory (RAM) to offload to")
    if largest * HEADROOM <= vram_bytes:
        why = f"{_gb(total)} does not fit {_gb(vram_bytes)} of VRAM; its largest part does"
        return MemoryPlan(Offload.MODEL, total, largest, why)
    why = f"even its largest part ({_gb(largest)}) does not fit {_gb(vram_bytes)} of VRAM"
    return MemoryPlan(Offload.SEQUENTIAL, total, largest, why)


def _check_fits(total: int, available: int | None, what: str) -> None:
    if available is not None and total * HEADROOM > available:
        raise ModelError(
            f"This model needs about {_gb(total * HEADROOM)} of {what}; about "
            f"{_gb(available)} is free. Close other programs, pick a quantised (GGUF) or fp8 "
            "version of the model, or turn on 'Skip T5' for SD3 in Settings."
        )


def _gb(size: float) -> str:
    if size < GIB:
        return f"{size / 1024**2:.0f} MB" if size >= 1024**2 else f"{size / 1024:.0f} KB"
    return f"{size / GIB:.1f} GB"


def available_ram_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (Linux), else None (not checked)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def vram_bytes(device, cache_budget: int | None) -> int | None:
    """The VRAM a model may use: the cache's budget, else 90% of the device's memory."""
    if cache_budget:
        return cache_budget
    import torch

    if device.type == "cuda" and torch.cuda.is_available():
        return int(torch.cuda.get_device_properties(device).total_memory * 0.9)
    return None


# -- sizes from headers ------------------------------------------------------------------------
def component_bytes(folder: Path, dtype_name: str, *, skip: set[str] = frozenset()) -> dict:
    """{component: bytes in `dtype_name`} for a diffusers folder, from its safetensors headers."""
    sizes: dict[str, int] = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and p.name not in skip):
        size = sum(file_bytes(f, dtype_name) for f in sub.glob("*.safetensors"))
        if size:
            sizes[sub.name] = size
    return sizes


def file_bytes(path: Path, dtype_name: str) -> int:
    """Bytes a weights file takes once loaded: floats in the compute dtype, GGUF as stored."""
    from engine.library.header import BrokenFile, read_header

    if path.suffix.lower() == ".gguf":
        return path.stat().st_size
    try:
        header = read_header(path)
    except BrokenFile:
        return path.stat().st_size
    per_element = _DTYPE_BYTES.get(dtype_name, 4)
    total = 0
    for info in header.tensors.values():
        count = 1
        for dim in info.shape:
            count *= dim
        total += count * (per_element if info.dtype in _FLOAT_DTYPES else 1)
    return total


def make_room(cache, plan: MemoryPlan, device_type: str) -> None:
    """Ask the cache to evict what a model of the plan's size would not fit beside."""
    on_device = plan.model_bytes if plan.offload is Offload.NONE else plan.largest_bytes
    if device_type == "cuda":
        cache.make_room(plan.model_bytes - on_device, on_device)
    else:
        cache.make_room(plan.model_bytes)


def plan_for(resolved, device, dtype, runtime, cache=None, *, cached: bool = False) -> MemoryPlan:
    """The memory plan for `resolved` under `runtime.offload` and the cache's VRAM budget.

    RAM is checked only before a load (`cached` False): a loaded model's own bytes are not free.
    """
    from engine.devices import dtype_name

    components = model_components(resolved, dtype_name(dtype), skip_t5=runtime.skip_t5)
    budget = cache._vram_budget() if cache is not None else None
    return choose_offload(
        runtime.offload,
        device.type,
        components,
        vram_bytes=vram_bytes(device, budget) if device.type == "cuda" else None,
        ram_bytes=None if cached else available_ram_bytes(),
    )


def model_components(resolved, dtype_name: str, *, skip_t5: bool = False) -> dict[str, int]:
    """{component: bytes} of a model in the compute dtype (the whole file for single files,
    plus a companion folder's other parts for SD3/FLUX transformer files)."""
    skip = {"text_encoder_3"} if skip_t5 and resolved.base == "sd3" else set()
    if resolved.layout == "diffusers":
        return component_bytes(resolved.path, dtype_name, skip=skip)
    components = {"checkpoint": file_bytes(resolved.path, dtype_name)}
    companion = _companion_for(resolved)
    if companion is not None:
        skip |= {"transformer"}
        components.update(component_bytes(companion, dtype_name, skip=skip))
    else:
        for component, part in _separate_parts(resolved, skip_t5=skip_t5).items():
            components[component] = file_bytes(part, dtype_name)
    return components


def _separate_parts(resolved, *, skip_t5: bool) -> dict[str, Path]:
    """The text encoder and VAE files a transformer-only file without a companion loads with."""
    from engine.sd.modern_families import MODERN_BASES, family_spec
    from engine.sd.modern_parts import bundled_config, choose_parts

    if resolved.base not in MODERN_BASES:
        return {}
    try:
        spec = family_spec(resolved.base, resolved.variant)
        config_dir = bundled_config(spec)
        if config_dir is None:
            return {}
        from engine.library.probe import probe_path

        if probe_path(resolved.path).details.get("contents") == "all-in-one":
            return {}
        return choose_parts(resolved.path, spec, config_dir, skip_t5=skip_t5 and spec.base == "sd3")
    except ModelError:
        return {}  # the load reports what is missing


def _companion_for(resolved) -> Path | None:
    from engine.sd.modern_families import MODERN_BASES

    if resolved.base not in MODERN_BASES:
        return None
    from engine.library.probe import probe_path
    from engine.sd.modern_families import family_spec
    from engine.sd.modern_loading import find_companion

    probe = probe_path(resolved.path)
    if probe.details.get("contents") == "all-in-one":
        return None
    try:
        return find_companion(resolved.path, family_spec(resolved.base, resolved.variant), probe)
    except ModelError:
        return None  # the load reports what is missing
