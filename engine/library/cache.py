"""Loaded models kept under a RAM budget, least recently used out first.

Use through `with cache.use(key, loader) as model:` so a model in use is never evicted while a
job holds it. Switching back to a cached model costs a dict lookup, not a reload.
"""

from __future__ import annotations

import gc
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any


def estimate_size_bytes(model: Any) -> int:
    """Bytes held by a torch module or a diffusers pipeline's components (0 if unknown)."""
    modules = []
    if hasattr(model, "parameters") and callable(model.parameters):
        modules.append(model)
    components = getattr(model, "components", None)
    if isinstance(components, dict):
        modules.extend(c for c in components.values() if hasattr(c, "parameters"))
    total = 0
    seen: set[int] = set()
    for module in modules:
        for tensor in list(module.parameters()) + list(module.buffers()):
            if id(tensor) in seen:
                continue
            seen.add(id(tensor))
            total += tensor.numel() * tensor.element_size()
    return total


@dataclass
class _Entry:
    model: Any
    size: int
    users: int = 0


class ModelCache:
    def __init__(self, *, ram_budget_bytes: int | None = None):
        self.ram_budget_bytes = ram_budget_bytes or _default_budget()
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

    @contextmanager
    def use(self, key: str, loader: Callable[[], Any]) -> Iterator[Any]:
        """Yield the model for `key`, loading it with `loader()` if it is not cached."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                model = loader()
                self.loads += 1
                entry = _Entry(model, estimate_size_bytes(model))
                self._entries[key] = entry
            self._entries.move_to_end(key)
            entry.users += 1
            self._evict(keep=key)
        try:
            yield entry.model
        finally:
            with self._lock:
                entry.users -= 1

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

    def _evict(self, *, keep: str) -> None:
        evicted = False
        for key in list(self._entries):
            if self.used_bytes <= self.ram_budget_bytes:
                break
            entry = self._entries[key]
            if key == keep or entry.users > 0:
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


def _release_memory() -> None:
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass
