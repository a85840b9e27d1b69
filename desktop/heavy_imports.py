"""Importing torch and the Stable Diffusion stack on a background thread without freezing the GUI.

A background import can still stop the GUI thread: anything that holds the GIL does, and the
worst offender is not the import itself but Python's cyclic garbage collector. Torch, diffusers
and transformers leave about half a million long-lived objects (modules, functions, classes),
and a full collection walks every one of them while holding the GIL. Measured on this project's
2-core machine: a 241 ms GUI freeze when one fell due in the middle of the first model load,
and 30-100 ms ones during the diffusers imports.

So imports run with the collector paused, and what they leave is frozen (`gc.freeze`): imported
modules live for the whole session, so the collector never needs to look at them again, and
later collections only walk what was made since (a few ms). Nothing becomes uncollectable except
the cyclic garbage the imports leave (measured: about 12,000 objects; collecting them gave
back no measurable memory).
"""

from __future__ import annotations

import gc
import importlib
import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)

_FROZEN_AFTER: set[str] = set()


@contextmanager
def collector_paused(stage: str) -> Iterator[None]:
    """Pause the cyclic collector for the body, then freeze everything alive.

    Once per stage and process: a later bridge (the tests make many) imports nothing new, and
    freezing again would only pin its windows' garbage. Not re-entrant across threads; the
    bridge runs its import stages one after the other.
    """
    if stage in _FROZEN_AFTER:
        yield
        return
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        # freeze before re-enabling: the first young collection would otherwise walk every
        # object the imports made (measured: 160 ms)
        gc.freeze()
        _FROZEN_AFTER.add(stage)
        if was_enabled:
            gc.enable()


def import_all(names: Iterable[str], *, optional: bool) -> None:
    """Import "module", "module:attribute" (touch a lazily imported name) or
    "module:function()" (call it). Failures raise unless `optional` (then they are logged)."""
    for name in names:
        module, _, attribute = name.partition(":")
        try:
            loaded = importlib.import_module(module)
            if attribute:
                found = getattr(loaded, attribute.removesuffix("()"))
                if attribute.endswith("()"):
                    found()
        except Exception:
            if not optional:
                raise
            log.warning("background import of %s failed", name, exc_info=True)
