"""What an edit costs over a generation: edit_image of a stored 1024x1024 photo-like image (by its imagegen://
URI) against generate_image of the same size, both through the server over stdio, on the loopback Runware API
(its own process) answering each task after 500 ms.

    python -m bench.edit_overhead [--rounds 15]

The end-to-end difference includes the upload of the input to the API (a round trip and the API's own decoding
of the image, which a real Runware does on its side); the server's own part is timed step by step in the same
process: resolving and decoding the input, and encoding it for the upload. The target is on that part.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import anyio
import pybase64
from mcp.client import Client

from bench.common import machine, median_ms, table
from bench.runware_fake import fake_runware
from bench.runware_overhead import rounds_of, server
from imagegen_mcp.inputs import InputPolicy, InputResolver
from imagegen_mcp.storage import ImageStore
from imagegen_mcp.testing import photo_like_png

SIZE = {"width": 1024, "height": 1024}
TARGET_MS = 10.0


async def own_steps(rounds: int) -> list[list[object]]:
    """The server's own per-edit work, each step timed alone on a stored photo-like 1024x1024 image."""
    root = Path(tempfile.mkdtemp())
    store = ImageStore(root, 384, "webp")
    stored = store.save(photo_like_png(1024, 1024, 3), {"prompt": "x"})
    resolver = InputResolver(InputPolicy(roots=(root,)), store.path_for)
    resolving, encoding = [], []
    for _ in range(rounds):
        started = time.perf_counter()
        image = await resolver.resolve(stored.uri, "image")
        resolving.append(time.perf_counter() - started)
        started = time.perf_counter()
        pybase64.b64encode(image.data)
        encoding.append(time.perf_counter() - started)
    total = median_ms(resolving) + median_ms(encoding)
    return [
        ["resolve imagegen:// and decode the input (checks included)", median_ms(resolving), ""],
        ["data URI for the upload (base64 of the PNG)", median_ms(encoding), ""],
        ["the server's own extra work per edit", round(total, 1), f"<= {TARGET_MS:g} ms"],
    ]


async def main(rounds: int) -> None:
    with fake_runware(delay_s=0.5) as fake:
        async with Client(server(fake)) as client:
            made = await client.call_tool("generate_image", {"prompt": "a harbour", **SIZE})
            assert not made.is_error, made.content
            uri = (made.structured_content or {})["images"][0]["uri"]

            async def generate() -> None:
                result = await client.call_tool("generate_image", {"prompt": "a harbour at night", **SIZE})
                assert not result.is_error, result.content

            async def edit() -> None:
                result = await client.call_tool(
                    "edit_image", {"prompt": "the harbour at night", "image": uri, "strength": 0.6, **SIZE}
                )
                assert not result.is_error, result.content

            samples = await rounds_of({"generate": generate, "edit": edit}, rounds)
            fake.usage_and_forget()
    base, ours = samples["generate"], samples["edit"]
    deltas = [(edited - made) * 1000 for made, edited in zip(base, ours, strict=True)]
    ratios = [edited / made for made, edited in zip(base, ours, strict=True)]
    print(
        table(
            f"edit_image against generate_image, 1024x1024, Runware answering after 500 ms (median (range) of "
            f"{rounds} rounds; {machine()})",
            ["call", "median ms", "difference ms", "ratio"],
            [
                ["generate_image", median_ms(base), "", "1.000"],
                [
                    "edit_image (input by imagegen:// URI, uploaded once)",
                    median_ms(ours),
                    f"{statistics.median(deltas):.1f} ({min(deltas):.1f} to {max(deltas):.1f})",
                    f"{statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f})",
                ],
            ],
        )
    )
    print()
    print(table("The server's own part of an edit", ["step", "median ms", "target"], await own_steps(rounds)))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    anyio.run(main, parser.parse_args().rounds)
