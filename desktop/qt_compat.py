"""Work around a reference-count bug in PySide6 6.12 on Python 3.10/3.11.

Measured here (PySide6-Essentials 6.12.0, CPython 3.11.7): every call of a C++ method that
returns void drops one reference to `None`, and every `Signal.emit()` drops one to `True`,
without having taken them. CPython before 3.12 counts references on these singletons, so after
a few thousand calls the count reaches zero and the interpreter aborts ("Fatal Python error:
none_dealloc" / "bool_dealloc"), which takes the window down within seconds of use.

`None`, `True` and `False` are static objects that are never freed, so giving them a huge
reference count is safe: it is what CPython 3.12 does for them (immortal objects, PEP 683),
where the bug is harmless. Applied once, before the first Qt call, and only under an affected
PySide6: pyproject.toml keeps Easel's own installs below 6.12, so this guards installs made by
other means.
"""

from __future__ import annotations

import sys

_IMMORTAL = 1 << 60
_applied = False


def immortalize_singletons() -> bool:
    """Make None/True/False effectively immortal on CPython < 3.12. Returns True if applied."""
    global _applied
    if _applied or sys.version_info >= (3, 12) or sys.implementation.name != "cpython":
        return _applied
    if not _affected_pyside():
        return False
    import ctypes

    for obj in (None, True, False):
        # ob_refcnt is the first field of every CPython object (a Py_ssize_t)
        ctypes.c_ssize_t.from_address(id(obj)).value += _IMMORTAL
    _applied = True
    return True


def _affected_pyside() -> bool:
    try:
        import PySide6
    except ImportError:
        return False
    return str(getattr(PySide6, "__version__", "")).startswith("6.12")
