"""Context cost: the bytes one generate_image result for a 1024x1024 image puts in the client's context (all
content blocks and structured content, as JSON on the wire) against that image's PNG as base64.

    python -m bench.context_cost
"""

from __future__ import annotations

import base64
import json
import tempfile

import anyio
from mcp.client import Client

from bench.common import machine, table
from bench.images import photo_like_png
from bench.runware_fake import API_KEY, fake_runware
from imagegen_mcp.config import Settings
from imagegen_mcp.server.app import build_server


async def main() -> None:
    png_b64 = len(base64.b64encode(photo_like_png(1024, 1024)))
    rows: list[list[object]] = []
    with fake_runware(delay_s=0.0) as (url, _):
        for preview_format in ("webp", "jpeg"):
            settings = Settings.load(
                {
                    "RUNWARE_API_KEY": API_KEY,
                    "RUNWARE_URL": url,
                    "IMAGEGEN_OUTPUT_DIR": tempfile.mkdtemp(),
                    "IMAGEGEN_PREVIEW_FORMAT": preview_format,
                }
            )
            async with Client(build_server(settings)) as client:
                result = await client.call_tool(
                    "generate_image", {"prompt": "a lighthouse", "model": "flux_schnell", "width": 1024, "height": 1024}
                )
            assert not result.is_error
            wire = result.model_dump(mode="json", by_alias=True, exclude_none=True)
            blocks = {
                "text": 0,
                "image": 0,
                "resource_link": 0,
            }
            for block in wire["content"]:
                blocks[block["type"]] += len(json.dumps(block, separators=(",", ":")))
            structured = len(json.dumps(wire["structuredContent"], separators=(",", ":")))
            total = sum(blocks.values()) + structured
            rows.append(
                [
                    f"result, {preview_format} preview",
                    blocks["text"],
                    blocks["image"],
                    blocks["resource_link"],
                    structured,
                    total,
                    f"{100 * total / png_b64:.2f}%",
                ]
            )
    rows.append(["PNG as base64 (baseline)", "", "", "", "", png_b64, "100%"])
    print(
        table(
            f"Context cost of one 1024x1024 result, bytes ({machine()})",
            ["what", "text", "preview", "link", "structured", "total", "of baseline (target <= 5%)"],
            rows,
        )
    )


if __name__ == "__main__":
    anyio.run(main)
