"""Per-call overhead: generate_image through the server against the same request made directly with the
runware SDK, both to a loopback Runware server that answers after 500 ms with a 1024x1024 PNG.

    python -m bench.runware_overhead [--runs 15]

Also breaks the server's own per-image work down (decode, preview, metadata, write, result encoding).
"""

from __future__ import annotations

import argparse
import base64
import io
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import pybase64
from mcp.client import Client
from PIL import Image
from runware import IImageInference, Runware

from bench.common import machine, median_ms, table
from bench.runware_fake import API_KEY, fake_runware
from imagegen_mcp.config import Settings
from imagegen_mcp.providers.base import registry
from imagegen_mcp.providers.runware import RUNWARE_MODELS, RunwareModelConfig
from imagegen_mcp.server.app import build_server
from imagegen_mcp.storage import ImageStore, atomic_write, with_png_text
from imagegen_mcp.testing import photo_like_png

MODELS = registry(RUNWARE_MODELS)

MODEL = MODELS["juggernaut_pro"]
ARGS = {"prompt": "a lighthouse at dusk", "model": "runware:juggernaut_pro", "width": 1024, "height": 1024}


async def interleaved(calls: dict[str, Callable[[], Awaitable[object]]], runs: int) -> dict[str, list[float]]:
    """Time each call ``runs`` times, alternating between them so that drift affects all alike."""
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for call in calls.values():
        await call()  # warm: connection opened, modules imported
    for _ in range(runs):
        for name, call in calls.items():
            started = time.perf_counter()
            await call()
            samples[name].append(time.perf_counter() - started)
    return samples


def direct_task() -> IImageInference:
    assert isinstance(MODEL, RunwareModelConfig)
    return IImageInference(
        taskUUID=str(uuid.uuid4()),
        model=MODEL.air,
        positivePrompt=ARGS["prompt"],
        negativePrompt=MODEL.default_negative_prompt,
        width=1024,
        height=1024,
        steps=MODEL.default_steps,
        CFGScale=MODEL.default_guidance,
        seed=1234,
        numberResults=1,
        outputType="base64Data",
        outputFormat="PNG",
        includeCost=True,
    )


def breakdown(runs: int) -> list[list[object]]:
    """Each step of the server's per-image work, timed on its own with the same kind of image."""
    png = photo_like_png(1024, 1024, 0)
    encoded = base64.b64encode(png).decode()
    defaults = Settings.load({})
    store = ImageStore(Path(tempfile.mkdtemp()), defaults.preview_max_px, defaults.preview_format)
    image = Image.open(io.BytesIO(png))
    steps: dict[str, Callable[[], object]] = {
        "base64 decode of the answer (pybase64)": lambda: pybase64.b64decode(encoded, validate=True),
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


async def main(runs: int) -> None:
    with fake_runware(delay_s=0.5) as (url, _):
        runware = Runware(api_key=API_KEY, url=url)
        await runware.connect()
        settings = Settings.load(
            {"RUNWARE_API_KEY": API_KEY, "RUNWARE_URL": url, "IMAGEGEN_OUTPUT_DIR": tempfile.mkdtemp()}
        )
        async with Client(build_server(settings)) as client:

            async def direct() -> None:
                await runware.imageInference(requestImage=direct_task())

            async def through_server() -> None:
                result = await client.call_tool("generate_image", ARGS)
                assert not result.is_error, result.content

            samples = await interleaved({"direct": direct, "server": through_server}, runs)
        await runware.disconnect()
    served = samples["server"]
    base, ours = median_ms(samples["direct"]), median_ms(served)
    print(
        table(
            f"Per-call overhead, 1024x1024 PNG answered after 500 ms (median of {runs}; {machine()})",
            ["path", "median ms", "overhead ms", "ratio", "target"],
            [
                ["runware SDK directly", base, "", "1.000", ""],
                ["generate_image via MCP", ours, ours - base, f"{ours / base:.3f}", "<= 1.050"],
            ],
        )
    )
    print()
    print(table("Where the server's per-image milliseconds go", ["step", "median ms"], breakdown(runs)))
    print(f"\n(spread of the server path: stdev {statistics.stdev(served) * 1000:.1f} ms)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    anyio.run(main, parser.parse_args().runs)
