"""Starting and listing must stay light: no SDK or ML framework is imported until a generation needs it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.e2e import REPO, clean_environ

HEAVY = ["torch", "diffusers", "transformers", "google.genai", "runware"]

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import anyio
    from mcp.client import Client
    from imagegen_mcp.config import Settings
    from imagegen_mcp.server.app import build_server

    async def main():
        async with Client(build_server(Settings.load())) as client:
            await client.list_tools()
            await client.call_tool("list_providers", {})
            await client.call_tool("list_models", {})
            await client.read_resource("imagegen://providers")
        heavy = sys.argv[1:]
        print(json.dumps(sorted(m for m in sys.modules if any(m == h or m.startswith(h + ".") for h in heavy))))

    anyio.run(main)
    """
)


def test_listing_imports_no_heavy_module(tmp_path: Path) -> None:
    # Keys are set so that every availability check runs its full path.
    env = clean_environ(
        IMAGEGEN_OUTPUT_DIR=str(tmp_path),
        RUNWARE_API_KEY="dummy",
        GEMINI_API_KEY="dummy",
        FLUX_LOCAL_DEVICE="cpu",
        IMAGEGEN_LOG_LEVEL="WARNING",
    )
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, *HEAVY],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    imported = json.loads(done.stdout.strip().splitlines()[-1])
    assert imported == [], f"imported at start: {imported}"
