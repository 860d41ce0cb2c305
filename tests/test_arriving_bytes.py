"""Bytes decoded while they arrive: reads wait for what has not come, the decode equals that of the whole
bytes, and truncated, aborted or oversized images are refused as the full decode refuses them."""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable

import anyio
import pytest

from imagegen_mcp.images import ArrivingBytes, DecodedImage, UnusableImageError, decode_arriving, decode_image
from imagegen_mcp.providers.base import decoded_while_arriving
from imagegen_mcp.testing import photo_like_png
from tests.images import bomb_png

PHOTO = photo_like_png(320, 200, 3)


class Reader(threading.Thread):
    """Runs ``work`` in its own thread, keeping what it returned or raised."""

    def __init__(self, work: Callable[[], object]) -> None:
        super().__init__(daemon=True)
        self.work = work
        self.result: object = None
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self.result = self.work()
        except BaseException as exc:
            self.error = exc

    def finished(self, timeout: float = 5.0) -> bool:
        self.join(timeout)
        return not self.is_alive()


def test_a_read_waits_for_the_bytes_it_asks_for() -> None:
    arriving = ArrivingBytes()
    arriving.feed(b"abc")
    reader = Reader(lambda: arriving.read(5))
    reader.join(0.2)
    assert reader.is_alive()  # three of the five bytes have come: it still waits
    arriving.feed(b"defg")
    assert reader.finished() and reader.result == b"abcde"
    reader = Reader(lambda: arriving.read(10))
    reader.join(0.2)
    assert reader.is_alive()  # two bytes are there, but more may come: a short read would look like the end
    arriving.end()
    assert reader.finished() and reader.result == b"fg"
    assert arriving.read(1) == b""
    assert (arriving.seek(-3, 2), arriving.read()) == (4, b"efg")
    assert arriving.getvalue() == b"abcdefg"


def test_bytes_decoded_as_they_arrive_are_the_image_of_the_whole_bytes() -> None:
    arriving = ArrivingBytes()
    reader = Reader(lambda: decode_arriving(arriving, 10**7))
    for offset in range(0, len(PHOTO), 7919):  # parts that cut chunks and rows anywhere
        arriving.feed(PHOTO[offset : offset + 7919])
    arriving.end()
    assert reader.finished() and reader.error is None
    assert isinstance(reader.result, DecodedImage)
    whole = decode_image(PHOTO, 10**7)
    assert (reader.result.mime_type, reader.result.image.size) == ("image/png", (320, 200))
    assert reader.result.image.tobytes() == whole.image.tobytes()
    assert arriving.getvalue() == PHOTO


@pytest.mark.parametrize(
    ("data", "kind"),
    [(PHOTO[: len(PHOTO) // 2], "damaged"), (b"GIF89a" + bytes(100), "format")],
    ids=["truncated", "not PNG, JPEG or WebP"],
)
def test_what_the_full_decode_refuses_is_refused_once_the_bytes_end(data: bytes, kind: str) -> None:
    arriving = ArrivingBytes()
    reader = Reader(lambda: decode_arriving(arriving, 10**7))
    arriving.feed(data)
    arriving.end()
    assert reader.finished()
    assert isinstance(reader.error, UnusableImageError) and reader.error.kind == kind
    with pytest.raises(UnusableImageError) as whole:
        decode_image(data, 10**7)
    assert whole.value.kind == kind


def test_too_many_pixels_are_refused_from_the_header_without_waiting_for_the_rest() -> None:
    arriving = ArrivingBytes()
    reader = Reader(lambda: decode_arriving(arriving, 10**7))
    arriving.feed(bomb_png(40000, 40000))  # the rest never comes, and the stream is never ended
    assert reader.finished()
    assert isinstance(reader.error, UnusableImageError) and reader.error.kind == "pixels"
    arriving.abort()


def test_an_abort_ends_the_wait_of_a_decode() -> None:
    arriving = ArrivingBytes()
    reader = Reader(lambda: decode_arriving(arriving, 10**7))
    arriving.feed(PHOTO[:5000])
    reader.join(0.2)
    assert reader.is_alive()
    arriving.abort()
    assert reader.finished()
    assert isinstance(reader.error, UnusableImageError) and reader.error.kind == "damaged"


# -- a download decoded while it arrives ------------------------------------------------------------------


def slow_download(data: bytes) -> Callable[[ArrivingBytes], Awaitable[None]]:
    """Bytes that come in two parts, the second well after the decode would start."""

    async def receive(arriving: ArrivingBytes) -> None:
        arriving.feed(data[:1000])
        await anyio.sleep(0.1)
        arriving.feed(data[1000:])

    return receive


@pytest.mark.anyio
async def test_a_slow_download_comes_with_its_pixels() -> None:
    with anyio.fail_after(5):
        data, image = await decoded_while_arriving(slow_download(PHOTO), anyio.CapacityLimiter(1))
    assert data == PHOTO
    assert image is not None and image.tobytes() == decode_image(PHOTO, 10**7).image.tobytes()


@pytest.mark.anyio
async def test_a_download_over_while_every_decoder_is_busy_is_left_to_the_check() -> None:
    decoders = anyio.CapacityLimiter(1)
    with anyio.fail_after(5):
        async with decoders:  # the one decoder is busy (another download that stalls, say)
            data, image = await decoded_while_arriving(slow_download(PHOTO), decoders)
    assert (data, image) == (PHOTO, None)


@pytest.mark.anyio
async def test_a_failed_download_raises_its_own_error_and_stops_the_decode() -> None:
    async def receive(arriving: ArrivingBytes) -> None:
        arriving.feed(PHOTO[:1000])
        await anyio.sleep(0.1)
        raise ConnectionResetError("the image host went away")

    decoders = anyio.CapacityLimiter(1)
    with anyio.fail_after(5), pytest.raises(ConnectionResetError, match="went away"):
        await decoded_while_arriving(receive, decoders)
    assert decoders.borrowed_tokens == 0
