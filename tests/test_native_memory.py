"""Freed heap memory goes back to the OS (engine.native_memory), and the model cache asks."""

from __future__ import annotations

import re
import sys

import pytest

from engine import native_memory
from engine.library.cache import ModelCache


def _rss_mib() -> int:
    status = open("/proc/self/status", encoding="ascii").read()
    return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) // 1024


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_freed_blocks_in_the_middle_of_the_heap_leave_the_resident_size():
    # 64 KiB blocks stay under glibc's mmap threshold, so they live in the heap; keeping every
    # 16th pins the heap's top, and without a trim the freed pages stay resident
    blocks = [bytearray(64 * 1024) for _ in range(3200)]  # 200 MiB
    kept = blocks[::16]
    del blocks
    before = _rss_mib()
    assert native_memory.return_freed_memory() is True
    assert before - _rss_mib() > 100, "the freed 187 MiB should mostly leave"
    assert len(kept) == 200


def test_the_cache_trims_after_a_load_and_after_each_use(monkeypatch):
    calls = []
    monkeypatch.setattr(
        "engine.library.cache.return_freed_memory", lambda: calls.append("trim") or True
    )
    cache = ModelCache(ram_budget_bytes=10**9)
    with cache.use("a", lambda: object()):
        assert calls == ["trim"]  # after loading
    assert calls == ["trim", "trim"]  # after the job let go


def test_without_malloc_trim_it_is_a_quiet_no_op(monkeypatch):
    monkeypatch.setattr(native_memory, "_malloc_trim", lambda: None)
    assert native_memory.return_freed_memory() is False
