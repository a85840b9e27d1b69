"""Loaded models kept under a RAM budget (and a VRAM budget on GPUs), least recently used out
first.

Use through `with cache.use(key, loader) as model:` so a model in use is never evicted while a
job holds it. Switching back to a cached model costs a dict lookup, not a reload.

Sizes are measured per device from the model's tensors: bytes on the CPU count against the RAM
budget, bytes on the accelerator (CUDA) against the VRAM budget. They are measured again when a
job releases a model, because jobs move models between devices (`.to("cuda")`, CPU offload).
"""

from __future__ import annotations

import gc
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from engine.native_memory import return_freed_memory


def estimate_size_bytes(model: Any) -> int:
    """Bytes held by a torch module or a diffusers pipeline's components (0 if unknown)."""
    return sum(bytes_by_device(model).values())


def bytes_by_device(model: Any) -> dict[str, int]:
    """Bytes of parameters and buffers per device type ("cpu", "cuda", ...), shared tensors once.
    Works for torch modules, diffusers pipelines and spandrel descriptors (`.model`)."""
    modules = []
    # a wrapper's own components first (a native model names its side modules there)
    components = getattr(model, "components", None)
    if not (hasattr(model, "parameters") and callable(model.parameters)):
        inner = getattr(model, "model", None)
        if hasattr(inner, "parameters") and callable(inner.parameters):
            model = inner
    if hasattr(model, "parameters") and callable(model.parameters):
        modules.append(model)
    components = components if isinstance(components, dict) else getattr(model, "components", None)
    if isinstance(components, dict):
        modules.extend(c for c in components.values() if hasattr(c, "parameters"))
    totals: dict[str, int] = {}
    seen: set[int] = set()
    for module in modules:
        for tensor in list(module.parameters()) + list(module.buffers()):
            if id(tensor) in seen:
                continue
            seen.add(id(tensor))
            kind = tensor.device.type
            totals[kind] = totals.get(kind, 0) + tensor.numel() * tensor.element_size()
    return totals


@dataclass
class _Entry:
    model: Any
    size: int  # bytes in RAM
    vram: int = 0  # bytes on the accelerator
    users: int = 0


class ModelCache:
    """`ram_budget_bytes` defaults to half the machine's memory; `vram_budget_bytes` to 90% of
    the first CUDA device's memory when torch is loaded and sees one (else no VRAM limit).
    `accelerator` names the device type whose bytes count as VRAM."""

    def __init__(
        self,
        *,
        ram_budget_bytes: int | None = None,
        vram_budget_bytes: int | None = None,
        accelerator: str = "cuda",
    ):
        self.ram_budget_bytes = ram_budget_bytes or _default_budget()
        self.vram_budget_bytes = vram_budget_bytes
        self.accelerator = accelerator
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.RLock()
        self.loads = 0  # how many times a loader ran (tests and benchmarks read it)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def keys(self) -> list[str]:
        return list(self._entries)

    @property
    def used_bytes(self) -> int:
        return sum(e.size for e in self._entries.values())

    @property
    def used_vram_bytes(self) -> int:
        return sum(e.vram for e in self._entries.values())

    def _vram_budget(self) -> int | None:
        if self.vram_budget_bytes is None and self.accelerator == "cuda":
            self.vram_budget_bytes = _default_vram_budget()
        return self.vram_budget_bytes or None

    def _measure(self, entry: _Entry) -> None:
        by_device = bytes_by_device(entry.model)
        entry.vram = by_device.get(self.accelerator, 0)
        entry.size = sum(v for k, v in by_device.items() if k != self.accelerator)

    @contextmanager
    def use(self, key: str, loader: Callable[[], Any]) -> Iterator[Any]:
        """Yield the model for `key`, loading it with `loader()` if it is not cached."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                model = loader()
                return_freed_memory()  # what loading copied and dropped (channels_last, casts)
                self.loads += 1
                entry = _Entry(model, 0)
                self._measure(entry)
                self._entries[key] = entry
            self._entries.move_to_end(key)
            entry.users += 1
            self._evict(keep=key)
        try:
            yield entry.model
        finally:
            with self._lock:
                entry.users -= 1
                if self._entries.get(key) is entry:
                    self._measure(entry)  # the job may have moved it to or from the GPU
                    self._evict(keep=key)
            return_freed_memory()  # the job's activations, so an idle app is small again

    def make_room(self, ram_bytes: int, vram_bytes: int = 0) -> None:
        """Before loading a model of this size (read from its headers): drop least recently used
        models not in use until it fits both budgets, so old and new never peak together."""
        with self._lock:
            evicted = False
            for key in list(self._entries):  # oldest first
                ram_full = self.used_bytes + ram_bytes > self.ram_budget_bytes
                vram_budget = self._vram_budget()
                vram_full = (
                    vram_budget is not None
                    and vram_bytes > 0
                    and self.used_vram_bytes + vram_bytes > vram_budget
                )
                if not (ram_full or vram_full):
                    break
                if self._entries[key].users == 0:
                    del self._entries[key]
                    evicted = True
            if evicted:
                _release_memory()

    def drop(self, key: str) -> None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.users == 0:
                del self._entries[key]
                _release_memory()

    def clear(self) -> None:
        with self._lock:
            for key in [k for k, e in self._entries.items() if e.users == 0]:
                del self._entries[key]
            _release_memory()

    def _over_budget(self) -> tuple[bool, bool]:
        vram_budget = self._vram_budget()
        over_vram = vram_budget is not None and self.used_vram_bytes > vram_budget
        return self.used_bytes > self.ram_budget_bytes, over_vram

    def _evict(self, *, keep: str | None) -> None:
        """Drop least recently used models not in use until both budgets hold (or nothing
        more can go: a single model larger than the budget stays while it is the newest)."""
        evicted = False
        for key in list(self._entries):  # oldest first
            over_ram, over_vram = self._over_budget()
            if not (over_ram or over_vram):
                break
            entry = self._entries[key]
            if key == keep or entry.users > 0:
                continue
            if over_ram and entry.size == 0 and not over_vram:
                continue
            if over_vram and entry.vram == 0 and not over_ram:
                continue
            del self._entries[key]
            evicted = True
        if evicted:
            _release_memory()


def _default_budget() -> int:
    """Half of physical RAM: room for one SDXL pipeline and a couple of small models."""
    try:
        import os

        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        return max(2 * 1024**3, pages // 2)
    except (ValueError, OSError, AttributeError):
        return 8 * 1024**3


def _default_vram_budget() -> int | None:
    """90% of the first CUDA device's memory, if torch is already loaded and sees one (the cache
    must not import torch just to ask)."""
    import sys

    torch = sys.modules.get("torch")
    try:
        if torch is not None and torch.cuda.is_available():
            return int(torch.cuda.get_device_properties(0).total_memory * 0.9)
    except (RuntimeError, AssertionError):
        return None
    return None


def _release_memory() -> None:
    gc.collect()
    return_freed_memory()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass
