"""Concurrency: 32 concurrent generate_image calls against a loopback Runware server answering after 200 ms.

    python -m bench.concurrency [--calls 32] [--runs 5]

256x256 images measure multiplexing over the one shared connection (target: all done within 1.5x one call);
1024x1024 images measure throughput, shown next to the limit the cores allow for the per-image work. The
server runs as MCP clients run it, a subprocess over stdio; the fake Runware server is a third process.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import anyio
import pybase64
from mcp import StdioServerParameters
from mcp.client import Client

from bench.common import machine, median_ms, table
from bench.runware_fake import API_KEY, fake_runware
from imagegen_mcp.config import Settings
from imagegen_mcp.storage import ImageStore
from imagegen_mcp.testing import photo_like_png


def args(size: int) -> dict[str, object]:
    return {"prompt": "a lighthouse", "model": "runware:flux_schnell", "width": size, "height": size}


async def burst(client: Client, calls: int, size: int) -> float:
    started = time.perf_counter()
    async with anyio.create_task_group() as group:
        for _ in range(calls):

            async def one() -> None:
                result = await client.call_tool("generate_image", args(size))
                assert not result.is_error, result.content

            group.start_soon(one)
    return time.perf_counter() - started


def per_image_work_ms(size: int, runs: int = 10) -> float:
    """The server's CPU work for one image (base64 decode, preview, write), measured alone."""
    png = photo_like_png(size, size, 0)
    encoded = pybase64.b64encode(png).decode("ascii")
    defaults = Settings.load({})
    store = ImageStore(Path(tempfile.mkdtemp()), defaults.preview_max_px, defaults.preview_format)
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        store.save(pybase64.b64decode(encoded), {"prompt": "x"})
        samples.append(time.perf_counter() - started)
    return median_ms(samples)


async def bursts(
    calls: int, runs: int, photos: bool, size: int, compression: bool = True
) -> tuple[list[float], list[float], int]:
    """One call, then ``calls`` concurrent calls, ``runs`` times each, through a server over stdio."""
    with fake_runware(delay_s=0.2, photos=photos, compression=compression) as (url, pipe):
        env = {
            **os.environ,
            "RUNWARE_API_KEY": API_KEY,
            "RUNWARE_URL": url,
            "IMAGEGEN_OUTPUT_DIR": tempfile.mkdtemp(),
            "IMAGEGEN_LOG_LEVEL": "WARNING",
        }
        server = StdioServerParameters(command=sys.executable, args=["-m", "imagegen_mcp"], env=env)
        async with Client(server) as client:
            await burst(client, 4, size)  # connect and warm up
            single = [await burst(client, 1, size) for _ in range(runs)]
            many = [await burst(client, calls, size) for _ in range(runs)]
        pipe.send(None)
        return single, many, pipe.recv()


async def main(calls: int, runs: int) -> None:
    rows: list[list[object]] = []
    connections = set()
    for label, photos in (("flat-colour", False), ("photo-like", True)):
        single, many, opened = await bursts(calls, runs, photos, 256)
        connections.add(opened)
        one_ms, all_ms = median_ms(single), median_ms(many)
        rows.append([f"1 call, 256x256 {label}", one_ms, "1.00", ""])
        rows.append([f"{calls} concurrent, 256x256 {label}", all_ms, f"{all_ms / one_ms:.2f}", "<= 1.50"])
    _, big, _ = await bursts(calls, runs, True, 1024)
    _, big_plain, _ = await bursts(calls, runs, True, 1024, compression=False)
    big_ms, plain_ms = median_ms(big), median_ms(big_plain)
    print(
        table(
            f"Concurrency over one Runware connection, server over stdio, fake answering after 200 ms "
            f"(median of {runs}; {machine()}; connections opened per run: {sorted(connections)})",
            ["burst", "wall ms", "ratio to one call", "target"],
            rows,
        )
    )
    work = per_image_work_ms(1024)
    cores = os.cpu_count() or 1
    print()
    print(
        table(
            f"Throughput, {calls} concurrent calls, 1024x1024",
            ["measure", "value"],
            [
                ["burst wall time (ms)", big_ms],
                ["images per second", calls / (big_ms / 1000)],
                ["images per second, WebSocket without permessage-deflate", calls / (plain_ms / 1000)],
                ["server work per image, alone (ms)", work],
                [f"limit for that work on {cores} cores (images/s)", cores * 1000 / work],
            ],
        )
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=32)
    parser.add_argument("--runs", type=int, default=5)
    options = parser.parse_args()
    anyio.run(main, options.calls, options.runs)
