"""The loopback Runware server of the test suite, run in its own process so its encoding work does not share
the measured process's interpreter, answering after a fixed delay."""

from __future__ import annotations

import functools
import multiprocessing
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection

from imagegen_mcp.testing import photo_like_png
from tests.fakes.runware_server import DEFAULT_KEY, FakeRunwareServer

API_KEY = DEFAULT_KEY


@functools.cache
def _photo_of_size(width: int, height: int) -> bytes:
    return photo_like_png(width, height, 0)


def _photo(width: int, height: int, seed: int) -> bytes:
    # One image per size, whatever the seed: what is measured is transport and handling, not the drawing.
    return _photo_of_size(width, height)


def _run(delay_s: float, photos: bool, compression: bool, pipe: Connection) -> None:
    server = FakeRunwareServer()
    server.delay_s = delay_s
    server.compression = compression
    if photos:
        server.png_factory = _photo
    server.start()
    pipe.send(server.url)
    pipe.recv()  # until the benchmark is done
    pipe.send(server.connections)
    server.stop()


@contextmanager
def fake_runware(delay_s: float, photos: bool = True, compression: bool = True) -> Iterator[tuple[str, Connection]]:
    """Yield the server's URL and a pipe; ``pipe.send(None); pipe.recv()`` returns its connection count.

    ``photos``: answer with photo-like PNGs (about 1.8 MB at 1024x1024); else the test suite's flat-colour
    PNGs (a few hundred bytes), which leave only the protocol work to measure. ``compression``: offer
    permessage-deflate, as a websockets server does by default.
    """
    ours, theirs = multiprocessing.Pipe()
    process = multiprocessing.get_context("spawn").Process(
        target=_run, args=(delay_s, photos, compression, theirs), daemon=True
    )
    process.start()
    try:
        yield ours.recv(), ours
    finally:
        process.kill()
        process.join(5)
