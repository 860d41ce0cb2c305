"""The loopback Runware API of the test suite, run in its own process so its encoding work does not share the
measured process's interpreter, answering after a fixed delay with one photo-like PNG per size."""

from __future__ import annotations

import functools
import multiprocessing
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection

from imagegen_mcp.testing import photo_like_png
from tests.fakes.runware_api import DEFAULT_KEY, FakeRunwareAPI

API_KEY = DEFAULT_KEY


@functools.cache
def _photo_of_size(width: int, height: int) -> bytes:
    return photo_like_png(width, height, 0)


def _photo(width: int, height: int, seed: int, output_format: str) -> bytes:
    # One image per size, whatever the seed: what is measured is transport and handling, not the drawing.
    return _photo_of_size(width, height)


@dataclass(frozen=True)
class Usage:
    """How the API was used: WebSocket connections, TCP connections of REST calls, image downloads."""

    websockets: int
    http_connections: int
    downloads: int


@dataclass(frozen=True)
class FakeRunware:
    ws_url: str
    http_url: str
    _pipe: Connection

    def usage_and_forget(self) -> Usage:
        """The usage so far; the records and images kept so far are dropped (they would fill the memory)."""
        self._pipe.send("usage")
        usage: Usage = self._pipe.recv()
        return usage


def _run(delay_s: float, download_bytes_per_s: float | None, pipe: Connection) -> None:
    server = FakeRunwareAPI(delay_s=delay_s, image_source=_photo, download_bytes_per_s=download_bytes_per_s)
    server.start()
    pipe.send((server.ws_url, server.http_url))
    while pipe.recv() == "usage":
        pipe.send(Usage(server.connections, server.http_connections, server.image_downloads))
        server.forget()
    server.stop()


@contextmanager
def fake_runware(delay_s: float, download_bytes_per_s: float | None = None) -> Iterator[FakeRunware]:
    """The API in a process of its own, accepting :data:`API_KEY`; images are photo-like PNGs (about 2.2 MB at
    1024x1024), so transport costs are those of real results. ``download_bytes_per_s``: images are sent at that
    rate, as over a real network link (None: as fast as loopback goes)."""
    ours, theirs = multiprocessing.Pipe()
    process = multiprocessing.get_context("spawn").Process(
        target=_run, args=(delay_s, download_bytes_per_s, theirs), daemon=True
    )
    process.start()
    try:
        ws_url, http_url = ours.recv()
        yield FakeRunware(ws_url, http_url, ours)
    finally:
        ours.send("stop")
        process.join(5)
        if process.is_alive():
            process.kill()
