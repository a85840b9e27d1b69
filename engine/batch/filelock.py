"""Advisory file locks on Unix (flock) and Windows (msvcrt): one helper for the batch code."""

from __future__ import annotations

import sys
import time
from typing import IO


def lock(handle: IO, *, blocking: bool) -> bool:
    """Lock an open file; False when `blocking` is off and another process holds it."""
    if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
        import msvcrt

        mode = msvcrt.LK_LOCK if blocking else msvcrt.LK_NBLCK
        while True:
            try:
                msvcrt.locking(handle.fileno(), mode, 1)
                return True
            except OSError:
                if not blocking:
                    return False
                time.sleep(0.1)  # LK_LOCK gives up after 10 s; keep waiting
    import fcntl

    flags = fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB)
    try:
        fcntl.flock(handle.fileno(), flags)
    except OSError:
        return False
    return True
