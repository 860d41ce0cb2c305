"""Start imagegen-mcp over stdio, as an MCP client does, and call each tool.

    python examples/client.py "a lighthouse at dusk, oil painting"

The server inherits this process's environment (RUNWARE_API_KEY, GEMINI_API_KEY, ...). Without any
provider configured, generate_image answers with a structured error that says what to set.
"""

from __future__ import annotations

import json
import os
import sys

import anyio
from mcp import StdioServerParameters
from mcp.client import Client
from mcp_types import ImageContent, ResourceLink, TextContent


async def main(prompt: str) -> None:
    server = StdioServerParameters(command=sys.executable, args=["-m", "imagegen_mcp"], env=dict(os.environ))
    async with Client(server) as client:
        providers = await client.call_tool("list_providers", {})
        print("== list_providers\n" + "".join(b.text for b in providers.content if isinstance(b, TextContent)))

        models = await client.call_tool("list_models", {})
        print("== list_models\n" + "".join(b.text for b in models.content if isinstance(b, TextContent)))

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            print(f"   progress {progress:5.1f}% {message or ''}")

        result = await client.call_tool("generate_image", {"prompt": prompt}, progress_callback=on_progress)
        print("== generate_image")
        for block in result.content:
            if isinstance(block, TextContent):
                print(block.text)
            elif isinstance(block, ImageContent):
                print(f"[preview: {block.mime_type}, {len(block.data) * 3 // 4} bytes]")
            elif isinstance(block, ResourceLink):
                full = await client.read_resource(str(block.uri))
                print(f"[resource {block.uri}: {len(full.contents)} content, {block.size} bytes]")
        if result.is_error:
            print(json.dumps(result.structured_content, indent=2))


if __name__ == "__main__":
    anyio.run(main, " ".join(sys.argv[1:]) or "a lighthouse at dusk, oil painting")
