"""PNG files built byte by byte, for metadata tests that need what Pillow will not write
(huge declared sizes, damaged or truncated chunks, compressed bombs)."""

from __future__ import annotations

import struct
import zlib

SIGNATURE = b"\x89PNG\r\n\x1a\n"


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def ihdr(width: int, height: int, color_type: int = 2) -> bytes:
    return chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0))


def text(key: str, value: str) -> bytes:
    return chunk(b"tEXt", key.encode("latin-1") + b"\0" + value.encode("latin-1"))


def itxt(key: str, value: str) -> bytes:
    return chunk(b"iTXt", key.encode("latin-1") + b"\0\0\0\0\0" + value.encode("utf-8"))


def ztxt(key: str, compressed: bytes) -> bytes:
    return chunk(b"zTXt", key.encode("latin-1") + b"\0\0" + compressed)


def png(*chunks: bytes, width: int = 1, height: int = 1, color_type: int = 2) -> bytes:
    """A PNG whose pixel data is one tiny (not decodable for big sizes) IDAT chunk."""
    idat = chunk(b"IDAT", zlib.compress(b"\0" * 4))
    return (
        SIGNATURE + ihdr(width, height, color_type) + b"".join(chunks) + idat + chunk(b"IEND", b"")
    )
