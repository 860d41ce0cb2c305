"""Context cost: the bytes an agent's context pays for the tool list (every conversation) and for one
generate_image result of a photo-like 1024x1024 image (every image), as JSON on the wire, against the image's
PNG as base64.

    python -m bench.context_cost
"""

from __future__ import annotations

import base64
import functools
import json
import tempfile
from typing import Any

import anyio
from mcp.client import Client

from bench.common import machine, table
from imagegen_mcp.config import Settings
from imagegen_mcp.providers.base import GeneratedImage, GenerationRequest, Progress, ProviderResult
from imagegen_mcp.server.app import build_server
from imagegen_mcp.testing import FunctionModelConfig, FunctionProvider, photo_like_png

#: (longest side, format) of the previews measured; the first is the default.
PREVIEWS = [(384, "webp"), (384, "jpeg"), (512, "webp"), (512, "jpeg")]
#: A tools/list costs at most this much per tool on average.
TOOLS_TARGET_BYTES = 2048
RESULT_TARGET_BYTES = 30 * 1024


@functools.cache
def photo() -> bytes:
    return photo_like_png(1024, 1024, 7)


async def draw(request: GenerationRequest, model: FunctionModelConfig, progress: Progress) -> ProviderResult:
    return ProviderResult(images=[GeneratedImage(photo(), "image/png", request.seed)])


def wire_size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":")))


async def result_row(side: int, preview_format: str) -> list[object]:
    settings = Settings.load(
        {
            "IMAGEGEN_OUTPUT_DIR": (folder := tempfile.mkdtemp()),
            "IMAGEGEN_DB": f"{folder}/history.sqlite3",
            "IMAGEGEN_PREVIEW_MAX_PX": str(side),
            "IMAGEGEN_PREVIEW_FORMAT": preview_format,
        }
    )
    provider = FunctionProvider(draw, name="photo")
    async with Client(build_server(settings, providers=[provider])) as client:
        result = await client.call_tool("generate_image", {"prompt": "a lighthouse at dusk", "width": 1024})
    assert not result.is_error, result.content
    wire = result.model_dump(mode="json", by_alias=True, exclude_none=True)
    blocks = {"text": 0, "image": 0, "resource_link": 0}
    for block in wire["content"]:
        blocks[block["type"]] += wire_size(block)
    structured = wire_size(wire["structuredContent"])
    total = sum(blocks.values()) + structured
    label = f"{side} px {preview_format}" + (" (default)" if (side, preview_format) == PREVIEWS[0] else "")
    png_b64 = len(base64.b64encode(photo()))
    ok = "yes" if total <= RESULT_TARGET_BYTES else "no"
    return [
        label,
        blocks["text"],
        blocks["image"],
        blocks["resource_link"],
        structured,
        total,
        f"{100 * total / png_b64:.2f}%",
        ok,
    ]


async def tools_rows() -> tuple[list[list[object]], int, int]:
    folder = tempfile.mkdtemp()
    settings = Settings.load({"IMAGEGEN_OUTPUT_DIR": folder, "IMAGEGEN_DB": f"{folder}/history.sqlite3"})
    async with Client(build_server(settings)) as client:
        tools = (await client.list_tools()).tools
    rows: list[list[object]] = []
    for tool in tools:
        wire = tool.model_dump(mode="json", by_alias=True, exclude_none=True)
        rows.append(
            [
                tool.name,
                len(wire.get("description", "")),
                wire_size(wire["inputSchema"]),
                wire_size(wire.get("outputSchema", {})),
                wire_size(wire),
            ]
        )
    total = sum(int(str(row[-1])) for row in rows)
    return rows, total, len(tools)


async def main() -> None:
    rows, total, count = await tools_rows()
    rows.append(["all tools", "", "", "", total])
    average = total / count
    rows.append(
        [
            "average per tool (target <= 2048)",
            "",
            "",
            "",
            f"{average:.0f} ({'met' if average <= TOOLS_TARGET_BYTES else 'missed'})",
        ]
    )
    print(
        table(
            f"tools/list, bytes on the wire ({machine()})",
            ["tool", "description", "input schema", "output schema", "tool"],
            rows,
        )
    )
    print()
    results = [await result_row(side, preview_format) for side, preview_format in PREVIEWS]
    png_b64 = len(base64.b64encode(photo()))
    results.append(["PNG as base64 (baseline)", "", "", "", "", png_b64, "100%", ""])
    print(
        table(
            "One generate_image result for a photo-like 1024x1024 image, bytes on the wire",
            ["preview", "text", "preview block", "link", "structured", "total", "of baseline", "<= 30 KB"],
            results,
        )
    )


if __name__ == "__main__":
    anyio.run(main)
