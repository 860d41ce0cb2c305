"""Decoding untrusted image bytes (a vendor's answer, an agent's input) safely: the format by content, the pixel
count from the header before any pixel is decoded, then a full decode that finds truncation and damage."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Literal

from PIL import Image

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: The formats accepted, by MIME type, with Pillow's name of each.
PIL_FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP"}


class UnusableImageError(ValueError):
    """Why some bytes are not a usable image: ``kind`` for callers that word it their own way."""

    def __init__(self, kind: Literal["format", "pixels", "damaged"], problem: str, size: tuple[int, int] | None = None):
        super().__init__(problem)
        self.kind = kind
        self.problem = problem
        self.size = size


def mime_from_content(data: bytes) -> str | None:
    """The MIME type the bytes themselves show (never a name or a declared type), if it is one accepted."""
    if data.startswith(PNG_SIGNATURE):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


@dataclass(frozen=True)
class DecodedImage:
    mime_type: str
    #: Fully loaded: every pixel was decoded.
    image: Image.Image


def decode_image(data: bytes, max_pixels: int, *, verified: bool = False) -> DecodedImage:
    """Decode ``data`` completely, refusing what is not PNG, JPEG or WebP, has more than ``max_pixels`` pixels
    (checked from the header, before decoding), or is damaged or truncated. ``verified``: the bytes were decoded
    and checked before (an image this server stored), so only the header is read; the pixels decode on use.

    Pillow itself refuses images over twice its ``MAX_IMAGE_PIXELS`` while opening them, and warns
    (``DecompressionBombWarning``) over once; the limit here is checked right after the header. The warning is
    not turned into an error because warning filters are process-wide and changing them is not thread-safe, and
    this runs in worker threads.
    """
    mime_type = mime_from_content(data)
    if mime_type is None:
        raise UnusableImageError("format", "is not a PNG, JPEG or WebP image")
    damaged = UnusableImageError("damaged", f"is a damaged or truncated {PIL_FORMATS[mime_type]} image")
    try:
        image = Image.open(io.BytesIO(data), formats=[PIL_FORMATS[mime_type]])
    except Image.DecompressionBombError:
        raise UnusableImageError("pixels", f"has more than the {max_pixels:,} pixels allowed") from None
    except Exception:  # any decoder failure on untrusted bytes means the image cannot be used
        raise damaged from None
    if image.width * image.height > max_pixels:
        raise UnusableImageError(
            "pixels", f"is {image.width}x{image.height}, more than the {max_pixels:,} pixels allowed", image.size
        )
    if verified:
        return DecodedImage(mime_type, image)
    try:
        image.load()
    except Exception:
        raise damaged from None
    return DecodedImage(mime_type, image)
