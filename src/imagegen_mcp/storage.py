"""Where generated images live: one output root, server-chosen names, atomic writes, previews, provenance.

Provenance goes into the PNG itself as an ``iTXt`` chunk spliced into the byte stream, so a PNG from a
provider is never decoded and re-encoded just to carry metadata. Only the preview is decoded.
"""

from __future__ import annotations

import io
import json
import os
import re
import secrets
import struct
import tempfile
import threading
import zlib
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from PIL import Image

from imagegen_mcp.config import PreviewFormat
from imagegen_mcp.images import PNG_SIGNATURE, decode_image

#: The most pixels a provider's image may have: where Pillow's own decompression-bomb check stops decoding by
#: default (twice its ``MAX_IMAGE_PIXELS``); a 12000x12000 result still passes.
MAX_OUTPUT_PIXELS = 178_956_970
PROVENANCE_KEYWORD = b"imagegen-mcp"
IMAGE_ID_PATTERN = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{8}$")
URI_PREFIX = "imagegen://images/"
PREVIEW_MIME = {"webp": "image/webp", "jpeg": "image/jpeg"}
#: Encoder settings of each preview format: at the default 384 px, a photograph's preview is about 20 KB
#: (27 KB as base64 in the result), enough for a model to judge subject, composition and colour.
PREVIEW_ENCODING: dict[str, dict[str, Any]] = {
    "webp": {"format": "WEBP", "quality": 55, "method": 0},
    "jpeg": {"format": "JPEG", "quality": 70},
}


@dataclass(frozen=True)
class StoredImage:
    id: str
    path: Path
    uri: str
    mime_type: str
    width: int
    height: int
    size_bytes: int
    preview: bytes
    preview_mime_type: str
    preview_width: int
    preview_height: int


def new_image_id(now: datetime | None = None) -> str:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{secrets.token_hex(4)}"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def with_png_text(png: bytes, keyword: bytes, text: str) -> bytes:
    """Insert an uncompressed ``iTXt`` chunk right after ``IHDR`` (which is always first and 25 bytes)."""
    if not png.startswith(PNG_SIGNATURE) or png[12:16] != b"IHDR":
        raise ValueError("not a PNG stream")
    end_of_ihdr = 8 + 25
    itxt = _chunk(b"iTXt", keyword + b"\x00\x00\x00\x00\x00" + text.encode("utf-8"))
    return png[:end_of_ihdr] + itxt + png[end_of_ihdr:]


def read_png_text(png: bytes, keyword: bytes = PROVENANCE_KEYWORD) -> str | None:
    offset = len(PNG_SIGNATURE)
    while offset + 8 <= len(png):
        length, kind = struct.unpack(">I4s", png[offset : offset + 8])
        data = png[offset + 8 : offset + 8 + length]
        if kind == b"iTXt" and data.startswith(keyword + b"\x00"):
            return data[len(keyword) + 5 :].decode("utf-8")
        if kind == b"IDAT":
            return None
        offset += 12 + length
    return None


@dataclass(frozen=True)
class CheckedImage:
    """An image a provider made, decoded completely and found usable, ready to store."""

    #: What is written: the provider's bytes when they are a PNG, else the image converted once.
    png: bytes
    image: Image.Image


def check_image(data: bytes, decoded: Image.Image | None = None) -> CheckedImage:
    """Decode a provider's image before anything is written (raises
    :class:`~imagegen_mcp.images.UnusableImageError`); ``decoded``: the provider's own pixels of ``data``, made in
    this process, which stand for the decode. Blocking: run it in a worker thread."""
    if decoded is not None and data.startswith(PNG_SIGNATURE):
        return CheckedImage(data, decoded)
    image = decode_image(data, MAX_OUTPUT_PIXELS).image
    if data.startswith(PNG_SIGNATURE):
        return CheckedImage(data, image)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return CheckedImage(buffer.getvalue(), image)


def atomic_write(path: Path, data: bytes) -> None:
    """Write to a temporary file beside ``path``, flush it to disk, then rename it into place."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def fit_within(image: Image.Image, limit: int, *, keep_alpha: bool = False) -> Image.Image:
    """``image`` (never changed itself) at most ``limit`` pixels on its longest side, in an 8-bit mode: L for
    greyscale, else RGB, or RGBA with ``keep_alpha``.

    The mode comes first: reducing takes 8-bit modes only (a 1-bit or 16-bit PNG is a valid result too). An
    integer box reduction does most of the shrinking (about 1 ms for 1024 -> 512, against ~17 ms for a
    full-size Lanczos resample); a bilinear resize from there covers a limit that is not a divisor.
    """
    original = image
    if image.mode not in ("RGB", "L", *(("RGBA",) if keep_alpha else ())):
        grey = image.mode in ("1", "I", "I;16", "F")
        image = image.convert("L" if grey else "RGBA" if keep_alpha else "RGB")
    factor = max(image.size) // limit
    if factor > 1:
        image = image.reduce(factor)
    if max(image.size) > limit:
        image = image.copy() if image is original else image
        image.thumbnail((limit, limit), Image.Resampling.BILINEAR)
    return image


class ImageStore:
    def __init__(self, root: Path, preview_max_px: int, preview_format: PreviewFormat) -> None:
        self.root = root
        self.preview_max_px = preview_max_px
        self.preview_format = preview_format
        #: Writes overlap with the preview's decoding (both release the GIL), off the caller's thread. Made on
        #: first use and again after :meth:`close`, so that a store outlives the sessions that close it.
        self._writer: ThreadPoolExecutor | None = None
        self._writer_lock = threading.Lock()

    def path_for(self, image_id: str) -> Path:
        if not IMAGE_ID_PATTERN.match(image_id):
            raise FileNotFoundError(image_id)
        return self.root / f"{image_id}.png"

    def save(
        self, checked: CheckedImage | bytes, provenance: Mapping[str, Any], written: list[Path] | None = None
    ) -> StoredImage:
        """Store one image (checked first when given as bytes) with its provenance and make its preview; its
        path is appended to ``written`` as soon as the file is in place, so a caller can take back every file
        of a call that failed. Raises ``OSError`` for what the output folder refused.

        Blocking: run it in a worker thread.
        """
        if isinstance(checked, bytes):
            checked = check_image(checked)
        image_id = new_image_id()
        path = self.path_for(image_id)
        record = {"id": image_id, **provenance}
        png = with_png_text(checked.png, PROVENANCE_KEYWORD, json.dumps(record, separators=(",", ":")))
        self.root.mkdir(parents=True, exist_ok=True)
        writing = self._executor().submit(atomic_write, path, png)
        width, height = checked.image.size
        try:
            preview, preview_size = self._preview(checked.image)
        finally:
            writing.result()  # the file is in place (or its error raised) before anyone hears of it
            if written is not None:
                written.append(path)
        return StoredImage(
            id=image_id,
            path=path,
            uri=URI_PREFIX + image_id,
            mime_type="image/png",
            width=width,
            height=height,
            size_bytes=len(png),
            preview=preview,
            preview_mime_type=PREVIEW_MIME[self.preview_format],
            preview_width=preview_size[0],
            preview_height=preview_size[1],
        )

    def _preview(self, image: Image.Image) -> tuple[bytes, tuple[int, int]]:
        """A small WebP (or JPEG) of ``image`` for the agent's context."""
        image = fit_within(image, self.preview_max_px)
        buffer = io.BytesIO()
        image.save(buffer, **PREVIEW_ENCODING[self.preview_format])
        return buffer.getvalue(), image.size

    def preview_of(self, image_id: str) -> bytes:
        """The preview of a stored image, made again from its file. Blocking: run it in a worker thread."""
        with Image.open(self.path_for(image_id)) as image:
            image.load()
            return self._preview(image)[0]

    def read(self, image_id: str) -> bytes:
        return self.path_for(image_id).read_bytes()

    def recent_ids(self, prefix: str = "", limit: int = 100) -> list[str]:
        """Ids of the stored images starting with ``prefix``, newest first (ids begin with their UTC time)."""
        try:
            names = [entry.name for entry in os.scandir(self.root) if entry.name.endswith(".png")]
        except OSError:
            return []
        ids = sorted((name[:-4] for name in names if name.startswith(prefix)), reverse=True)
        return [image_id for image_id in ids if IMAGE_ID_PATTERN.match(image_id)][:limit]

    def _executor(self) -> ThreadPoolExecutor:
        with self._writer_lock:
            if self._writer is None:
                self._writer = ThreadPoolExecutor(max_workers=4, thread_name_prefix="imagegen-write")
            return self._writer

    def close(self) -> None:
        """Stop the writer threads once the writes in progress are done (the next save starts new ones)."""
        with self._writer_lock:
            writer, self._writer = self._writer, None
        if writer is not None:
            writer.shutdown(wait=True)
