"""Metadata text from image files without decoding their pixels, with every size bounded.

PNG text chunks (tEXt, zTXt, iTXt) are read by walking the chunk list: the pixel data is
skipped, so a 900-megapixel PNG costs what its header costs, and a decompression bomb in a zTXt
chunk stops at `MAX_CHUNK_CHARS`. JPEG and WebP files give A1111's EXIF UserComment the same
way (the APP1 segment or the RIFF `EXIF` chunk, nothing else). Only A1111's "stealth" metadata,
which lives in the pixels' lowest bits, decodes an image, and only a small one.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import struct
import zlib
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path

from engine.errors import InputError

log = logging.getLogger(__name__)

#: one text chunk, decompressed: large ComfyUI workflows are a few hundred KB
MAX_CHUNK_CHARS = 4 * 1024 * 1024
#: all text of one file together
MAX_TOTAL_CHARS = 16 * 1024 * 1024
MAX_CHUNKS = 10_000
#: JSON deeper than this is refused before it is parsed (real metadata nests under 20)
MAX_JSON_DEPTH = 64
#: stealth metadata needs the pixels (decoded twice on a drop): only up to 4 MP, 2048x2048
STEALTH_MAX_PIXELS = 4 * 1024 * 1024

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TEXT_TYPES = {b"tEXt", b"zTXt", b"iTXt"}


class MetadataError(InputError):
    """An image's metadata is damaged or larger than Easel reads."""


@dataclass
class ImageText:
    """What an image file carries besides its pixels."""

    format: str = ""  # "PNG", "JPEG", "WEBP" or "" when not an image Easel reads metadata from
    width: int = 0
    height: int = 0
    has_alpha: bool = False
    chunks: dict[str, str] = field(default_factory=dict)
    user_comment: str | None = None  # EXIF UserComment (JPEG / WebP)
    skipped: list[str] = field(default_factory=list)  # what was too large or damaged to read


def read_image_text(path: str | PathLike) -> ImageText:
    """Text chunks and EXIF comment of the image at `path`; raises InputError when the file
    cannot be opened at all, and never decodes pixels."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            head = handle.read(12)
            handle.seek(0)
            if head.startswith(PNG_SIGNATURE):
                return _read_png(handle)
            if head.startswith(b"\xff\xd8"):
                return _read_jpeg(handle)
            if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
                return _read_webp(handle)
    except OSError as exc:
        raise InputError(f"Cannot read '{path.name}': {exc.strerror or exc}.") from exc
    return ImageText()


# -- PNG ----------------------------------------------------------------------------------------
def _read_png(handle: io.BufferedIOBase) -> ImageText:
    handle.seek(len(PNG_SIGNATURE))
    found = ImageText(format="PNG")
    total = 0
    for _ in range(MAX_CHUNKS):
        header = handle.read(8)
        if len(header) < 8:
            break
        length, kind = struct.unpack(">I4s", header)
        if kind == b"IHDR" and 13 <= length <= 64:
            data = handle.read(length)
            if len(data) < 13:
                break
            found.width, found.height = struct.unpack(">II", data[:8])
            found.has_alpha = data[9] in (4, 6)
            handle.seek(4, io.SEEK_CUR)
            continue
        if kind == b"IEND":
            break
        if kind not in _TEXT_TYPES or length > MAX_CHUNK_CHARS or total > MAX_TOTAL_CHARS:
            if kind in _TEXT_TYPES:
                found.skipped.append(f"a {length:,}-byte text chunk (larger than Easel reads)")
            handle.seek(length + 4, io.SEEK_CUR)  # skip pixel data and big chunks unread
            continue
        data = handle.read(length)
        crc = handle.read(4)
        if len(data) < length or len(crc) < 4:
            found.skipped.append("a text chunk cut short (the file is truncated)")
            break
        if zlib.crc32(kind + data) != struct.unpack(">I", crc)[0]:
            found.skipped.append("a damaged text chunk (checksum mismatch)")
            continue
        try:
            key, text = _decode_text_chunk(kind, data)
        except (ValueError, zlib.error, UnicodeDecodeError) as exc:
            found.skipped.append(f"an unreadable text chunk ({exc})")
            continue
        total += len(text)
        found.chunks.setdefault(key, text)  # first wins: later copies are usually edits
    return found


def _decode_text_chunk(kind: bytes, data: bytes) -> tuple[str, str]:
    key, sep, rest = data.partition(b"\0")
    if not sep or not 1 <= len(key) <= 79:
        raise ValueError("no keyword")
    keyword = key.decode("latin-1")
    if kind == b"tEXt":
        return keyword, rest.decode("latin-1")
    if kind == b"zTXt":
        if not rest or rest[0] != 0:
            raise ValueError("unknown compression")
        return keyword, inflate(rest[1:]).decode("latin-1")
    # iTXt: compression flag, method, language\0, translated keyword\0, UTF-8 text
    if len(rest) < 2:
        raise ValueError("short iTXt")
    compressed, method = rest[0], rest[1]
    parts = rest[2:].split(b"\0", 2)
    if len(parts) != 3:
        raise ValueError("short iTXt")
    text = parts[2]
    if compressed:
        if method != 0:
            raise ValueError("unknown compression")
        text = inflate(text)
    return keyword, text.decode("utf-8")


def inflate(data: bytes, limit: int = MAX_CHUNK_CHARS, *, gzipped: bool = False) -> bytes:
    """zlib (or gzip) data inflated to at most `limit` bytes: a bomb stops at the limit."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS if gzipped else zlib.MAX_WBITS)
    out = inflater.decompress(data, limit + 1)
    if len(out) > limit:
        raise ValueError(f"text larger than {limit:,} bytes")
    return out


# -- JPEG / WebP: A1111 writes its text as EXIF UserComment ----------------------------------
def _read_jpeg(handle: io.BufferedIOBase) -> ImageText:
    found = ImageText(format="JPEG")
    handle.seek(2)
    for _ in range(MAX_CHUNKS):
        marker = handle.read(2)
        if len(marker) < 2 or marker[0] != 0xFF:
            break
        if marker[1] in (0xD9, 0xDA):  # end of image, start of scan: no metadata after
            break
        if 0xD0 <= marker[1] <= 0xD7 or marker[1] == 0x01:
            continue
        size_bytes = handle.read(2)
        if len(size_bytes) < 2:
            break
        size = struct.unpack(">H", size_bytes)[0] - 2
        if size < 0:
            break
        if marker[1] == 0xE1 and found.user_comment is None:
            segment = handle.read(size)
            if segment.startswith(b"Exif\0\0"):
                found.user_comment = _exif_user_comment(segment[6:])
            continue
        if marker[1] == 0xC0 or marker[1] == 0xC2:
            frame = handle.read(size)
            if len(frame) >= 5:
                found.height, found.width = struct.unpack(">HH", frame[1:5])
            continue
        handle.seek(size, io.SEEK_CUR)
    return found


def _read_webp(handle: io.BufferedIOBase) -> ImageText:
    found = ImageText(format="WEBP")
    handle.seek(12)
    for _ in range(MAX_CHUNKS):
        header = handle.read(8)
        if len(header) < 8:
            break
        kind, size = header[:4], struct.unpack("<I", header[4:])[0]
        if kind == b"EXIF" and size <= MAX_CHUNK_CHARS:
            data = handle.read(size)
            found.user_comment = _exif_user_comment(data.removeprefix(b"Exif\0\0"))
            break
        handle.seek(size + (size & 1), io.SEEK_CUR)
    return found


def _exif_user_comment(tiff: bytes) -> str | None:
    from PIL import Image

    exif = Image.Exif()
    try:
        exif.load(tiff)
        raw = exif.get_ifd(0x8769).get(0x9286)
    except (OSError, ValueError, SyntaxError, struct.error, KeyError, TypeError):
        return None
    if isinstance(raw, str):
        return raw[:MAX_CHUNK_CHARS]
    if not isinstance(raw, bytes):
        return None
    return decode_user_comment(raw[: MAX_CHUNK_CHARS * 2 + 8])


def decode_user_comment(raw: bytes) -> str:
    """EXIF UserComment: an 8-byte character-set code, then the text (UTF-16 for UNICODE;
    A1111 writes big-endian through piexif, some tools little-endian)."""
    code, body = raw[:8], raw[8:]
    if code.startswith(b"UNICODE"):
        if body[:2] in (b"\xff\xfe", b"\xfe\xff"):
            return body.decode("utf-16", errors="replace")
        # ASCII text in UTF-16: the zero byte comes first in big-endian
        big = body[:1] == b"\0" or (len(body) > 1 and body[1:2] != b"\0")
        return body.decode("utf-16-be" if big else "utf-16-le", errors="replace")
    return body.decode("utf-8", errors="replace").rstrip("\0")


# -- stealth metadata in the lowest bits (A1111 "stealth pnginfo" extension, NovelAI) --------
#: header -> gzip-compressed; the extension's default alpha-channel forms (its RGB forms are
#: not read: they would mean decoding every plain PNG dropped on the app a second time)
_STEALTH_HEADERS = {b"stealth_pnginfo": False, b"stealth_pngcomp": True}


def read_stealth_text(path: str | PathLike, info: ImageText) -> str | None:
    """Text hidden in the least significant bits (column by column), or None.

    Only PNGs with an alpha channel, up to `STEALTH_MAX_PIXELS`, are decoded."""
    if info.format != "PNG" or not info.has_alpha:
        return None
    if not 0 < info.width * info.height <= STEALTH_MAX_PIXELS:
        return None
    import numpy as np
    from PIL import Image

    try:
        with Image.open(path) as image:
            alpha = np.asarray(image.convert("RGBA"))[..., 3]
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        log.info("no stealth metadata in %s: %s", path, exc)
        return None
    bits = alpha.T.reshape(-1) & 1  # the writer goes down each column, left to right
    for header, compressed in _STEALTH_HEADERS.items():
        head_bits = len(header) * 8
        if _bytes_from_bits(bits[:head_bits]) != header:
            continue
        length = int.from_bytes(_bytes_from_bits(bits[head_bits : head_bits + 32]), "big")
        start = head_bits + 32
        if length % 8 or length // 8 > MAX_CHUNK_CHARS or start + length > bits.size:
            return None
        payload = _bytes_from_bits(bits[start : start + length])
        try:
            data = inflate(payload, gzipped=True) if compressed else payload
            return data.decode("utf-8")
        except (ValueError, zlib.error, UnicodeDecodeError, EOFError, gzip.BadGzipFile):
            return None
    return None


def _bytes_from_bits(bits) -> bytes:
    import numpy as np

    return np.packbits(bits.astype(np.uint8)).tobytes()


# -- JSON with bounded nesting ------------------------------------------------------------------
def json_depth(value, limit: int = MAX_JSON_DEPTH) -> int:
    """Nesting depth of a parsed JSON value, walked with an explicit stack (no recursion);
    stops counting past `limit`."""
    if not isinstance(value, (dict, list)):
        return 0
    deepest, level = 0, [value]
    while level:  # one pass per nesting level, over the containers of that level only
        deepest += 1
        if deepest > limit:
            return deepest
        level = [
            child
            for item in level
            for child in (item.values() if isinstance(item, dict) else item)
            if isinstance(child, (dict, list))
        ]
    return deepest


def load_json(text: str, what: str = "metadata"):
    """json.loads for untrusted metadata: size and depth checked, errors as MetadataError.

    The C parser itself stops deep nesting at the recursion limit (RecursionError, caught
    here), so a million `[` costs one failed parse; what parses is then held to
    `MAX_JSON_DEPTH` (real metadata nests under 20)."""
    if len(text) > MAX_CHUNK_CHARS:
        raise MetadataError(f"The {what} is larger than Easel reads ({len(text):,} characters).")
    deep = MetadataError(f"The {what} is nested deeper than any real metadata; not read.")
    try:
        value = json.loads(text)
    except RecursionError:
        raise deep from None
    except ValueError as exc:
        raise MetadataError(f"The {what} is not valid JSON ({exc}).") from exc
    if json_depth(value) > MAX_JSON_DEPTH:
        raise deep
    return value
