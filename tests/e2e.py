"""Helpers for driving the server through a real MCP client."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from mcp import StdioServerParameters
from mcp_types import CallToolResult, ImageContent, ResourceLink, TextContent
from PIL import Image

REPO = Path(__file__).resolve().parent.parent

#: Variables a provider could pick up from the developer's machine; subprocesses start without them.
PROVIDER_VARIABLES = ("RUNWARE_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY", "FLUX_LOCAL_DEVICE", "IMAGEGEN_CONFIG")


def clean_environ(**extra: str) -> dict[str, str]:
    """This process's environment without provider or server settings, plus ``extra``. The history database
    is private to the caller: beside ``IMAGEGEN_OUTPUT_DIR`` when that is given, else in a new folder."""
    environ = {k: v for k, v in os.environ.items() if k not in PROVIDER_VARIABLES and not k.startswith("IMAGEGEN_")}
    if "IMAGEGEN_DB" not in extra:
        output = extra.get("IMAGEGEN_OUTPUT_DIR")
        folder = Path(output) if output else Path(tempfile.mkdtemp(prefix="imagegen-test-"))
        extra = {**extra, "IMAGEGEN_DB": str(folder.with_name(folder.name + "-history.sqlite3"))}
    return {**environ, **extra}


def write_palette_plugin(folder: Path) -> str:
    """Register the test provider through the entry-point group, as an installed plugin would be.

    Returns a PYTHONPATH that holds the plugin's metadata and the repository (for ``tests.fakes``).
    """
    dist_info = folder / "imagegen_palette_plugin-1.0.dist-info"
    dist_info.mkdir(parents=True, exist_ok=True)
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: imagegen-palette-plugin\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text(
        "[imagegen_mcp.providers]\n"
        "palette = tests.fakes.palette:PaletteProvider\n"
        "backup = tests.fakes.palette:BackupPaletteProvider\n"
    )
    return os.pathsep.join([str(folder), str(REPO)])


def stdio_parameters(env: dict[str, str], *args: str) -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable, args=["-m", "imagegen_mcp", *args], env=env, cwd=str(REPO))


INITIALIZE: dict[str, Any] = {
    "jsonrpc": "2.0",
    "id": 0,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}
INITIALIZED: dict[str, Any] = {"jsonrpc": "2.0", "method": "notifications/initialized"}


def exchange_over_stdio(
    command: list[str], env: dict[str, str], requests: list[dict[str, Any]], timeout_s: float = 120
) -> tuple[list[dict[str, Any]], str]:
    """Initialize a server subprocess by hand, send ``requests`` and read until each one is answered.

    Every stdout line must parse as a JSON message (the test fails otherwise) and nothing may follow the
    answers. stdin stays open until then: its end ends the session. Returns the messages and stderr.
    """
    process = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO
    )
    assert process.stdin is not None and process.stdout is not None and process.stderr is not None
    waiting = {request["id"] for request in [INITIALIZE, *requests] if "id" in request}
    parsed: list[dict[str, Any]] = []
    watchdog = threading.Timer(timeout_s, process.kill)  # a hung server ends the test instead of blocking it
    watchdog.start()
    try:
        process.stdin.write("".join(json.dumps(m) + "\n" for m in [INITIALIZE, INITIALIZED, *requests]))
        process.stdin.flush()
        while waiting - {message.get("id") for message in parsed}:
            line = process.stdout.readline()
            assert line, "the server closed stdout early:\n" + process.stderr.read()
            parsed.append(json.loads(line))
    finally:
        process.stdin.close()
        process.wait(timeout=60)
        watchdog.cancel()
    rest, stderr = process.stdout.read(), process.stderr.read()
    assert rest.strip() == ""
    assert all(message.get("jsonrpc") == "2.0" for message in parsed)
    return parsed, stderr


def error_of(result: CallToolResult) -> dict[str, Any]:
    """The structured error of an ``isError`` result (``{"error": {...}}``, nothing else beside it)."""
    assert result.is_error, text_of(result)
    structured = result.structured_content or {}
    error = structured.get("error")
    assert isinstance(error, dict) and set(structured) == {"error"}, structured
    return error


def text_of(result: CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))


def assert_image_result(result: CallToolResult, count: int, preview_max_px: int = 384) -> list[dict[str, Any]]:
    """Check the shape of a successful generate_image result and return its images' structured entries."""
    assert not result.is_error, text_of(result)
    structured = result.structured_content
    assert structured is not None
    images: list[dict[str, Any]] = structured["images"]
    assert len(images) == count
    previews = [block for block in result.content if isinstance(block, ImageContent)]
    links = [block for block in result.content if isinstance(block, ResourceLink)]
    assert len(previews) == len(links) == count
    for image, preview, link in zip(images, previews, links, strict=True):
        assert Path(image["path"]).is_file()
        assert Path(image["path"]).is_absolute()
        assert str(link.uri) == image["uri"]
        assert link.mime_type == "image/png"
        decoded = Image.open(io.BytesIO(base64.b64decode(preview.data)))
        assert max(decoded.size) <= preview_max_px
        assert preview.mime_type in ("image/webp", "image/jpeg")
    # Base64 only lives in the preview blocks: never in text or structured content.
    assert "iVBOR" not in text_of(result) and "iVBOR" not in str(structured)
    return images
