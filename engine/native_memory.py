"""Hand memory the process has freed back to the operating system (glibc's `malloc_trim`).

Why: torch and Python allocate large tensors through `malloc`. When a big tensor is freed, glibc
keeps its pages in the heap for reuse instead of returning them, so the process's resident size
stays at its high-water mark. Loading a model leaves exactly that behind: converting SD 1.5's
UNet and VAE to channels_last copies every convolution weight and frees the old ones, and the
~350 MiB freed stayed resident until the process ended (measured: 2,915 -> 2,561 MiB after a
trim, bench/peak_rss.py). Trimming after a load, after a job and after dropping a model makes
the resident size follow what is really in use. Other C libraries (macOS, Windows, musl) return
large blocks on their own; there this is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import threading

_trim = None
_looked_up = False
_lock = threading.Lock()


def _malloc_trim():
    """glibc's malloc_trim, or None where the C library has none (looked up once)."""
    global _trim, _looked_up
    with _lock:
        if not _looked_up:
            _looked_up = True
            if sys.platform.startswith("linux"):
                try:
                    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                    _trim = libc.malloc_trim
                    _trim.argtypes = [ctypes.c_size_t]
                    _trim.restype = ctypes.c_int
                except (OSError, AttributeError):  # musl and others: no malloc_trim
                    _trim = None
    return _trim


def return_freed_memory() -> bool:
    """Give the heap's free pages back to the OS; True if anything was returned."""
    trim = _malloc_trim()
    if trim is None:
        return False
    return bool(trim(0))
