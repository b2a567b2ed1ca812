"""Reading untrusted image files and bytes with Pillow, within fixed byte and pixel limits.

Every place that opens a picture (``ImageFolder``, ``cnnkit predict``, ``cnnkit.viz`` and the web server)
goes through :func:`read_image`, so a decompression bomb, a huge declared size, an oversized text chunk or a
damaged file gives one :class:`ImageInputError` line instead of a Pillow traceback or an exhausted memory.
Pillow's own global limits are left as they are: the checks here run before any pixel is decoded.
"""
from __future__ import annotations

import io
import math
import os
import re

OBJECT_REPR = re.compile(r"\s*<[^<>]* at 0x[0-9a-fA-F]+>")

MAX_PIXELS = 4096 * 4096        # width x height accepted before decoding (a 16-bit RGBA one is 128 MiB)
MAX_BYTES = 32 * 1024 * 1024    # encoded size accepted; real photos and drawings are far smaller
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Raster formats decoded by Pillow itself; EPS and PDF-like formats would hand the bytes to Ghostscript.
FORMATS = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "PPM", "TGA", "ICO")


class ImageInputError(ValueError):
    """The bytes or file given are not a picture we can use (the message says why)."""


def _pillow():
    try:
        from PIL import Image
    except ImportError:
        raise ImportError("reading images needs Pillow: pip install Pillow (or 'cnnkit[images]')") from None
    return Image


def _declared_size(data):
    """(width, height) from a PNG, GIF or BMP header, or None: Pillow's bomb error gives only a pixel count."""
    if data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return int.from_bytes(data[6:8], "little"), int.from_bytes(data[8:10], "little")
    if data[:2] == b"BM" and len(data) >= 26:
        return (abs(int.from_bytes(data[18:22], "little", signed=True)),
                abs(int.from_bytes(data[22:26], "little", signed=True)))
    return None


def too_large_message(width, height, max_pixels=MAX_PIXELS):
    """The one line for a picture over the pixel limit."""
    side = math.isqrt(max_pixels)
    square = f" ({side} x {side})" if side * side == max_pixels else ""
    return f"image too large: {width} x {height} pixels, limit {max_pixels} pixels{square}"


def _read_bytes(path, max_bytes, name):
    try:
        size = os.path.getsize(path)
        if size > max_bytes:
            raise ImageInputError(f"image too large: {name} is {size} bytes, limit {max_bytes} bytes")
        with open(path, "rb") as file:
            return file.read(max_bytes + 1)
    except OSError as error:  # missing, a folder, no permission
        raise ImageInputError(f"cannot read image {name}: {error.strerror or error}") from None


def read_image(source, max_pixels=MAX_PIXELS, max_bytes=MAX_BYTES):
    """A decoded PIL image from a path or bytes, refused with :class:`ImageInputError` past the limits."""
    image_module = _pillow()
    if isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        data = _read_bytes(source, max_bytes, name)
        where = f" ({name})"
    elif isinstance(source, (bytes, bytearray, memoryview)):
        data, where = bytes(source), ""
    else:
        raise TypeError(f"read_image: expected a path or bytes, got {type(source).__name__}")
    if len(data) > max_bytes:
        raise ImageInputError(f"image too large: {len(data)} bytes{where}, limit {max_bytes} bytes")
    if not data:
        raise ImageInputError(f"image is empty{where}")
    try:
        image = image_module.open(io.BytesIO(data), formats=FORMATS)
    except image_module.DecompressionBombError:
        size = _declared_size(data)
        message = too_large_message(*size, max_pixels) if size else f"image too large: limit {max_pixels} pixels"
        raise ImageInputError(message + where) from None
    except Exception as error:  # any failure to parse untrusted bytes is the file's fault, not ours
        raise _failure(f"not an image in a format read here ({', '.join(FORMATS)})", error, where) from None
    width, height = image.size
    if width * height > max_pixels:
        raise ImageInputError(too_large_message(width, height, max_pixels) + where)
    try:
        image.load()
    except Exception as error:
        raise _failure("image data is damaged", error, where) from None
    return image


def _failure(what, error, where):
    """The error for a Pillow failure: the first line of its message, without object addresses."""
    text = OBJECT_REPR.sub("", str(error).splitlines()[0] if str(error) else "")
    if "MAX_TEXT" in text or "text chunks" in text:
        return ImageInputError(f"image too large: a text chunk{where} is over Pillow's text limit")
    # Pillow's words about the bytes help the sender; its exception class is an internal detail
    return ImageInputError(f"{what}{where} ({text[:160]})" if text else f"{what}{where}")
