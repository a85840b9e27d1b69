"""Long-lived helpers shared by all jobs of one engine: the model cache and the model library.

Created lazily by the worker on the first job, so constructing an Engine costs nothing.
"""

from __future__ import annotations

from functools import cached_property


class Services:
    def __init__(self, *, ram_budget_bytes: int | None = None):
        self._ram_budget = ram_budget_bytes

    @cached_property
    def cache(self):
        from engine.library.cache import ModelCache

        return ModelCache(ram_budget_bytes=self._ram_budget)
