"""The real command over stdio, as an MCP client launches it: stdout carries JSON-RPC and nothing else."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from mcp.client import Client
from mcp_types import BlobResourceContents

from tests.e2e import (
    REPO,
    assert_image_result,
    clean_environ,
    error_of,
    exchange_over_stdio,
    stdio_parameters,
    text_of,
    write_palette_plugin,
)

pytestmark = pytest.mark.anyio


async def test_no_keys_no_gpu_over_stdio(tmp_path: Path) -> None:
    env = clean_environ(IMAGEGEN_OUTPUT_DIR=str(tmp_path))
    async with Client(stdio_parameters(env)) as client:
        tools = {tool.name for tool in (await client.list_tools()).tools}
        providers = (await client.call_tool("list_providers", {})).structured_content
        result = await client.call_tool("generate_image", {"prompt": "a lighthouse at dusk"})
    assert {"list_providers", "list_models", "generate_image", "edit_image", "get_job", "search_images"} <= tools
    assert providers is not None
    assert {p["name"]: p["available"] for p in providers["providers"]} == {
        "flux_local": False,
        "gemini": False,
        "runware": False,
    }
    assert result.is_error
    error = error_of(result)
    assert error["code"] == "no_provider_available"
    assert "RUNWARE_API_KEY" in text_of(result) and "GEMINI_API_KEY" in text_of(result)


async def test_plugin_provider_generates_over_stdio(tmp_path: Path) -> None:
    env = clean_environ(
        IMAGEGEN_OUTPUT_DIR=str(tmp_path / "out"),
        IMAGEGEN_DEFAULT_PROVIDER="palette",
        PYTHONPATH=write_palette_plugin(tmp_path / "plugin"),
    )
    async with Client(stdio_parameters(env)) as client:
        result = await client.call_tool("generate_image", {"prompt": "green", "model": "palette:solid_green"})
        (image,) = assert_image_result(result, count=1)
        blob = (await client.read_resource(image["uri"])).contents[0]
        bad = await client.call_tool("generate_image", {"prompt": "x", "count": 99})
        again = await client.call_tool("generate_image", {"prompt": "after the bad call"})
    assert isinstance(blob, BlobResourceContents) and blob.mime_type == "image/png"
    assert Path(image["path"]).parent == tmp_path / "out"
    assert bad.is_error and error_of(bad)["code"] == "invalid_request"
    assert not again.is_error


def test_stdout_carries_only_json_rpc(tmp_path: Path) -> None:
    """Drive the server by hand and check every stdout line is a JSON-RPC message; logs go to stderr."""
    env = clean_environ(
        IMAGEGEN_OUTPUT_DIR=str(tmp_path / "out"),
        IMAGEGEN_DEFAULT_PROVIDER="palette",
        IMAGEGEN_LOG_LEVEL="DEBUG",
        PYTHONPATH=write_palette_plugin(tmp_path / "plugin"),
    )
    requests = [
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
        {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "list_providers", "arguments": {}}},
        {
            "jsonrpc": "2.0",
            "id": 4,
            "method": "tools/call",
            "params": {"name": "generate_image", "arguments": {"prompt": "x"}},
        },
        {
            "jsonrpc": "2.0",
            "id": 5,
            "method": "tools/call",
            "params": {"name": "generate_image", "arguments": {"prompt": ""}},
        },
    ]
    parsed, stderr = exchange_over_stdio([sys.executable, "-m", "imagegen_mcp"], env, requests)
    by_id = {message["id"]: message for message in parsed if "id" in message}
    assert by_id[4]["result"]["isError"] is False
    assert by_id[5]["result"]["isError"] is True
    assert "DEBUG mcp.server" in stderr  # the logs went to stderr


def test_invalid_setting_stops_the_server_with_a_clear_message(tmp_path: Path) -> None:
    env = clean_environ(IMAGEGEN_FALLBACK="sometimes", IMAGEGEN_OUTPUT_DIR=str(tmp_path))
    done = subprocess.run(
        [sys.executable, "-m", "imagegen_mcp"], input="", capture_output=True, text=True, env=env, cwd=REPO, timeout=60
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert "IMAGEGEN_FALLBACK" in done.stderr and "'auto' or 'strict'" in done.stderr
