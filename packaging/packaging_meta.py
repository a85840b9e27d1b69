"""Version and Windows version-info for the bundles, read from pyproject.toml (one source)."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _read_version() -> str:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    match = re.search(r'^version\s*=\s*"([^"]+)"', text, re.MULTILINE)
    return match.group(1) if match else "0.0.0"


APP_VERSION = _read_version()


def windows_version_file() -> str:
    """Write a VSVersionInfo file PyInstaller embeds in the Windows executables."""
    parts = [int(p) for p in re.findall(r"\d+", APP_VERSION)[:3]] + [0, 0, 0, 0]
    numbers = tuple(parts[:4])
    text = f"""VSVersionInfo(
  ffi=FixedFileInfo(filevers={numbers}, prodvers={numbers}, mask=0x3f, flags=0x0, OS=0x40004,
                    fileType=0x1, subtype=0x0, date=(0, 0)),
  kids=[
    StringFileInfo([StringTable('040904B0', [
      StringStruct('CompanyName', 'Easel'),
      StringStruct('FileDescription', 'Easel offline image studio'),
      StringStruct('FileVersion', '{APP_VERSION}'),
      StringStruct('InternalName', 'Easel'),
      StringStruct('LegalCopyright', 'Easel contributors, MIT licence'),
      StringStruct('OriginalFilename', 'Easel.exe'),
      StringStruct('ProductName', 'Easel'),
      StringStruct('ProductVersion', '{APP_VERSION}')])]),
    VarFileInfo([VarStruct('Translation', [1033, 1200])])
  ]
)
"""
    path = Path(tempfile.gettempdir()) / "easel_version_info.txt"
    path.write_text(text, encoding="utf-8")
    return str(path)
