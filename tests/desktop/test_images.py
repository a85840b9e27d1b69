"""Checked image loading: every bad input is one clear message, decided before decoding."""

from __future__ import annotations

import struct
import zlib

import pytest
from PIL import Image
from PySide6.QtCore import QUrl
from PySide6.QtGui import QImage

from desktop.images import (
    MAX_PIXELS,
    check_qimage,
    load_image_file,
    local_path,
    pil_to_qimage,
    qimage_to_pil,
)
from engine.errors import InputError


def png_header_only(path, width, height):
    """A PNG whose header claims width x height but holds almost no data (a 'bomb')."""

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 16)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )
    return path


@pytest.mark.parametrize(
    "fmt,suffix", [("PNG", "png"), ("JPEG", "jpg"), ("WEBP", "webp"), ("BMP", "bmp")]
)
def test_supported_formats_load(tmp_path, fmt, suffix):
    path = tmp_path / f"x.{suffix}"
    Image.new("RGB", (33, 17), (10, 200, 30)).save(path, format=fmt)
    image = load_image_file(path)
    assert (image.width(), image.height()) == (33, 17)
    r, g, b, _ = image.pixelColor(5, 5).getRgb()
    assert abs(g - 200) < 12 and r < 30


def test_not_an_image(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("just text")
    with pytest.raises(InputError, match="not a picture Easel can read"):
        load_image_file(path)


def test_corrupt_image(tmp_path):
    path = tmp_path / "broken.png"
    Image.new("RGB", (64, 64), "red").save(path)
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(InputError, match="damaged|not a picture"):
        load_image_file(path)


def test_huge_image_refused_from_its_header(tmp_path):
    path = png_header_only(tmp_path / "bomb.png", 10_000, 10_000)
    assert 10_000 * 10_000 > MAX_PIXELS
    with pytest.raises(InputError, match="100 MP"):
        load_image_file(path)


def test_folder_and_missing_file(tmp_path):
    with pytest.raises(InputError, match="is a folder"):
        load_image_file(tmp_path)
    with pytest.raises(InputError, match="does not exist"):
        load_image_file(tmp_path / "nope.png")


def test_remote_url_refused():
    with pytest.raises(InputError, match="not a file on this computer"):
        local_path(QUrl("https://example.com/cat.png"))


def test_pil_qimage_round_trip():
    source = Image.new("RGB", (9, 5))
    source.putdata([(i * 5, 255 - i * 5, 7) for i in range(45)])
    back = qimage_to_pil(pil_to_qimage(source))
    assert back.tobytes() == source.tobytes()


def test_null_clipboard_image():
    with pytest.raises(InputError, match="could not be read"):
        check_qimage(QImage(), "The clipboard image")
