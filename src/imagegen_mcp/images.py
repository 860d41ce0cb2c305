"""Decoding untrusted image bytes (a vendor's answer, an agent's input) safely: the format by content, the pixel
count from the header before any pixel is decoded, then a full decode that finds truncation and damage. The
bytes can also be decoded while they arrive (:class:`ArrivingBytes`), so that a download and its decode overlap.
"""

from __future__ import annotations

import bisect
import io
import sys
import threading
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Literal, cast

from PIL import Image

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

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
    return _decode(io.BytesIO(data), data[:12], max_pixels, verified=verified)


def decode_arriving(arriving: ArrivingBytes, max_pixels: int) -> DecodedImage:
    """:func:`decode_image` of bytes still arriving: each part is decoded as it comes, and the decode ends once
    every byte has arrived (or as soon as the header shows too many pixels). Bytes aborted
    (:meth:`ArrivingBytes.abort`) end it: as damaged once the header has come, else with ``OSError``. Blocking:
    run it in a worker thread while the bytes are fed."""
    # A binary file as Pillow reads one (RawIOBase is not typed as IO[bytes]).
    return _decode(cast("IO[bytes]", arriving), arriving.peek(12), max_pixels, verified=False)


def _decode(source: IO[bytes], head: bytes, max_pixels: int, *, verified: bool) -> DecodedImage:
    mime_type = mime_from_content(head)
    if mime_type is None:
        raise UnusableImageError("format", "is not a PNG, JPEG or WebP image")
    damaged = UnusableImageError("damaged", f"is a damaged or truncated {PIL_FORMATS[mime_type]} image")
    try:
        image = Image.open(source, formats=[PIL_FORMATS[mime_type]])
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


class ArrivingBytes(io.RawIOBase):
    """A file of bytes that arrive over time (a download), for a reader in another thread: a read waits until
    the bytes it asks for have arrived or the last one has (:meth:`end`), as a read of a file on disk would,
    so a decoder can run while the bytes come. :meth:`abort` ends every wait with ``OSError``.

    The parts are kept as they came (no copy while they arrive); the reader copies what it reads, and
    :meth:`getvalue` joins them once.
    """

    def __init__(self) -> None:
        super().__init__()
        self._parts: list[bytes] = []
        #: Where each part starts, and how many bytes have come.
        self._starts: list[int] = []
        self._size = 0
        self._position = 0
        self._ended = False
        self._aborted = False
        #: How many bytes the reader waits for: it is woken only once they are there, not for every part.
        self._wanted: int | None = None
        self._arrived = threading.Condition()

    # -- the side the bytes come from ------------------------------------------------------------------

    def feed(self, part: bytes) -> None:
        with self._arrived:
            self._parts.append(part)
            self._starts.append(self._size)
            self._size += len(part)
            if self._wanted is not None and self._size >= self._wanted:
                self._arrived.notify()

    def end(self) -> None:
        """Every byte has arrived."""
        with self._arrived:
            self._ended = True
            self._arrived.notify_all()

    def abort(self) -> None:
        """The bytes will not all come (the download failed or was cancelled): the reader stops."""
        with self._arrived:
            self._ended = self._aborted = True
            self._arrived.notify_all()

    def getvalue(self) -> bytes:
        with self._arrived:
            return b"".join(self._parts)

    # -- the reading side ------------------------------------------------------------------------------

    def _wait_for(self, size: int) -> None:
        """Until ``size`` bytes have arrived or the stream has ended."""
        self._wanted = size
        self._arrived.wait_for(lambda: self._ended or self._size >= size)
        self._wanted = None
        if self._aborted:
            raise OSError("the image's download did not finish")

    def _copy(self, start: int, into: memoryview) -> int:
        """Copy the bytes from ``start`` on into ``into`` (as many as have come); how many were copied."""
        copied = 0
        index = max(0, bisect.bisect_right(self._starts, start) - 1)
        while copied < len(into) and index < len(self._parts):
            part = memoryview(self._parts[index])[start + copied - self._starts[index] :]
            size = min(len(part), len(into) - copied)
            into[copied : copied + size] = part[:size]
            copied += size
            index += 1
        return copied

    def peek(self, size: int) -> bytes:
        """The first ``size`` bytes (fewer if the stream is shorter), waiting for them."""
        with self._arrived:
            self._wait_for(size)
            head = bytearray(min(size, self._size))
            self._copy(0, memoryview(head))
            return bytes(head)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        with self._arrived, memoryview(buffer) as view:
            self._wait_for(self._position + view.nbytes)
            copied = self._copy(self._position, view.cast("B"))
            self._position += copied
            return copied

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        with self._arrived:
            if whence == io.SEEK_END:
                self._wait_for(sys.maxsize)
                offset += self._size
            elif whence == io.SEEK_CUR:
                offset += self._position
            self._position = max(0, offset)
            return self._position

    def tell(self) -> int:
        return self._position
