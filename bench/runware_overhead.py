"""Per-call overhead: generate_image through the server (over stdio, as MCP clients run it) against the same
image fetched directly with runware-sdk, both from the loopback Runware API (its own process) answering after
500 ms with a 1024x1024 photo-like PNG, in the transport and output the provider uses by default. The image host
sends at loopback speed (the target's conditions), and again at the speeds of real links, where the server
decodes the image while it downloads.

    python -m bench.runware_overhead [--rounds 15]

Each round times both paths once, in turn; the ratio is taken per round, and the table gives its median and
range. Also breaks the server's own per-image work down (decode, preview, metadata, write).
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import anyio
import pybase64
from mcp import StdioServerParameters
from mcp.client import Client
from PIL import Image
from runware import Runware

from bench.common import machine, median_ms, table
from bench.runware_fake import API_KEY, FakeRunware, fake_runware
from imagegen_mcp.config import Settings
from imagegen_mcp.providers.base import registry
from imagegen_mcp.providers.runware import OUTPUT_TYPES, RUNWARE_MODELS, RunwareModelConfig, RunwareSettings
from imagegen_mcp.storage import ImageStore, atomic_write, with_png_text
from imagegen_mcp.testing import photo_like_png

MODEL = registry(RUNWARE_MODELS)["juggernaut_pro"]
ARGS = {"prompt": "a lighthouse at dusk", "model": "runware:juggernaut_pro", "width": 1024, "height": 1024}
DEFAULTS = RunwareSettings()


def direct_task() -> dict[str, object]:
    """The task the provider sends for ``ARGS``."""
    assert isinstance(MODEL, RunwareModelConfig)
    return {
        "taskType": "imageInference",
        "taskUUID": str(uuid.uuid4()),
        "deliveryMethod": "sync",
        "model": MODEL.air,
        "positivePrompt": ARGS["prompt"],
        "negativePrompt": MODEL.default_negative_prompt,
        "width": 1024,
        "height": 1024,
        "steps": MODEL.default_steps,
        "CFGScale": MODEL.default_guidance,
        "seed": 1234,
        "numberResults": 1,
        "outputType": OUTPUT_TYPES[DEFAULTS.output],
        "outputFormat": "PNG",
        "includeCost": True,
    }


async def rounds_of(calls: dict[str, Callable[[], Awaitable[object]]], rounds: int) -> dict[str, list[float]]:
    """Time each call once per round, in turn, so that drift affects all alike."""
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for call in calls.values():
        await call()  # warm: connection opened, modules imported
    for _ in range(rounds):
        for name, call in calls.items():
            started = time.perf_counter()
            await call()
            samples[name].append(time.perf_counter() - started)
    return samples


def breakdown(runs: int) -> list[list[object]]:
    """Each step of the server's per-image work, timed on its own with the same kind of image."""
    png = photo_like_png(1024, 1024, 0)
    encoded = base64.b64encode(png).decode()
    defaults = Settings.load({})
    store = ImageStore(Path(tempfile.mkdtemp()), defaults.preview_max_px, defaults.preview_format)
    image = Image.open(io.BytesIO(png))
    steps: dict[str, Callable[[], object]] = {
        "base64 decode of an inline answer (pybase64)": lambda: pybase64.b64decode(encoded, validate=True),
        "PNG decode (for the preview)": lambda: Image.open(io.BytesIO(png)).load(),
        f"preview: reduce + {defaults.preview_format} encode": lambda: store._preview(image.copy()),
        "provenance chunk spliced into the PNG": lambda: with_png_text(png, b"imagegen-mcp", "x" * 600),
        "atomic write + fsync": lambda: atomic_write(store.root / "bench.png", png),
        "whole ImageStore.save": lambda: store.save(png, {"prompt": "x"}),
    }
    rows: list[list[object]] = []
    for name, step in steps.items():
        samples = []
        for _ in range(runs):
            started = time.perf_counter()
            step()
            samples.append(time.perf_counter() - started)
        rows.append([name, median_ms(samples)])
    return rows


def server(fake: FakeRunware) -> StdioServerParameters:
    env = {
        **os.environ,
        "RUNWARE_API_KEY": API_KEY,
        "RUNWARE_URL": fake.ws_url,
        "RUNWARE_HTTP_URL": fake.http_url,
        "IMAGEGEN_OUTPUT_DIR": tempfile.mkdtemp(),
        "IMAGEGEN_LOG_LEVEL": "WARNING",
    }
    return StdioServerParameters(command=sys.executable, args=["-m", "imagegen_mcp"], env=env)


#: Image host speeds measured: loopback (no limit), a fast data-centre link, an office or home line.
LINKS: dict[str, float | None] = {"loopback": None, "100 MB/s": 100e6, "12.5 MB/s (100 Mbit/s)": 12.5e6}


async def samples_over(link: float | None, rounds: int) -> tuple[list[float], list[float]]:
    """Per-round times of the direct call and of the call through the server, the image host sending at ``link``
    bytes per second."""
    with fake_runware(delay_s=0.5, download_bytes_per_s=link) as fake:
        sdk = Runware(
            api_key=API_KEY,
            transport=DEFAULTS.transport,
            ws_base_url=fake.ws_url,
            http_base_url=fake.http_url,
            max_retries=0,
            max_reconnect_attempts=0,
        )
        async with sdk, aiohttp.ClientSession() as http, Client(server(fake)) as client:

            async def direct() -> None:
                (item,) = await sdk.run(direct_task())
                if "imageURL" in item:
                    async with http.get(item["imageURL"]) as response:
                        await response.read()
                else:
                    pybase64.b64decode(item["imageBase64Data"], validate=True)

            async def through_server() -> None:
                result = await client.call_tool("generate_image", ARGS)
                assert not result.is_error, result.content

            samples = await rounds_of({"direct": direct, "server": through_server}, rounds)
            fake.usage_and_forget()
    return samples["direct"], samples["server"]


async def main(rounds: int) -> None:
    rows: list[list[object]] = []
    for link_name, link in LINKS.items():
        base, ours = await samples_over(link, rounds)
        ratios = [served / alone for alone, served in zip(base, ours, strict=True)]
        overheads = [served - alone for alone, served in zip(base, ours, strict=True)]
        rows.append(
            [
                link_name,
                median_ms(base),
                median_ms(ours),
                f"{statistics.median(overheads) * 1000:.1f}",
                f"{statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f})",
                "<= 1.050" if link is None else "",
            ]
        )
    path = f"{DEFAULTS.transport}, outputType {OUTPUT_TYPES[DEFAULTS.output]}"
    print(
        table(
            f"Per-call overhead, 1024x1024 photo-like PNG answered after 500 ms ({path}; median (range) of "
            f"{rounds} rounds; {machine()})",
            [
                "image host link",
                "runware-sdk directly (+ the image fetched) ms",
                "generate_image, server over stdio ms",
                "overhead ms",
                "ratio",
                "target",
            ],
            rows,
        )
    )
    print()
    print(table("Where the server's per-image milliseconds go", ["step", "median ms"], breakdown(rounds)))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    anyio.run(main, parser.parse_args().rounds)
