"""Small images the tests pass as inputs: as data URIs, in solid colours, and PNGs that are decompression bombs."""

from __future__ import annotations

import base64
import io
import struct
import zlib

from PIL import Image

from imagegen_mcp.images import PNG_SIGNATURE


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def solid_png(width: int, height: int, colour: tuple[int, ...] | int = (200, 30, 30), mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(width: int, height: int) -> bytes:
    """A 1-bit PNG whose header announces ``width`` x ``height`` pixels, in a few hundred bytes."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    row = b"\x00" + bytes(-(-width // 8))
    return (
        PNG_SIGNATURE
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(row * 64, 9))
        + png_chunk(b"IEND", b"")
    )
