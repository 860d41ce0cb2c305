"""Streamable HTTP and SSE on loopback, with a real MCP client, Origin checks and the bearer token."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2
import pytest
from mcp.client import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

from tests.e2e import REPO, assert_image_result, clean_environ, error_of, write_palette_plugin

pytestmark = pytest.mark.anyio

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}
MCP_HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_server(tmp_path: Path, *args: str, **environ: str) -> Iterator[int]:
    port = free_port()
    env = clean_environ(
        IMAGEGEN_OUTPUT_DIR=str(tmp_path / "out"),
        IMAGEGEN_DEFAULT_PROVIDER="palette",
        PYTHONPATH=write_palette_plugin(tmp_path / "plugin"),
        **environ,
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "imagegen_mcp", "serve", "--port", str(port), *args],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=15)


async def test_streamable_http_end_to_end(tmp_path: Path) -> None:
    with running_server(tmp_path, "--transport", "streamable-http") as port:
        url = f"http://127.0.0.1:{port}/mcp"
        async with Client(url) as client:
            tools = {tool.name for tool in (await client.list_tools()).tools}
            result = await client.call_tool("generate_image", {"prompt": "over http", "count": 2})
            bad = await client.call_tool("generate_image", {"prompt": "x", "width": 0})
            providers = await client.call_tool("list_providers", {})
        # A second session on the same server: whatever the first one's end closed is reopened.
        async with Client(url) as client:
            again = await client.call_tool("generate_image", {"prompt": "second session"})
        assert {"list_providers", "list_models", "generate_image", "edit_image", "get_job"} <= tools
        assert_image_result(result, count=2)
        assert_image_result(again, count=1)
        assert bad.is_error and error_of(bad)["code"] == "invalid_request"
        assert not providers.is_error

        async with httpx2.AsyncClient() as http:
            evil = await http.post(url, json=INITIALIZE, headers={**MCP_HEADERS, "origin": "http://evil.example"})
            local = await http.post(url, json=INITIALIZE, headers={**MCP_HEADERS, "origin": f"http://127.0.0.1:{port}"})
            rebound = await http.post(url, json=INITIALIZE, headers={**MCP_HEADERS, "host": "evil.example"})
        assert evil.status_code == 403
        assert local.status_code == 200
        assert rebound.status_code == 421


async def test_sse_end_to_end(tmp_path: Path) -> None:
    with running_server(tmp_path, "--transport", "sse") as port:
        async with Client(sse_client(f"http://127.0.0.1:{port}/sse")) as client:
            result = await client.call_tool("generate_image", {"prompt": "over sse"})
        assert_image_result(result, count=1)


async def test_bearer_token_is_required_when_set(tmp_path: Path) -> None:
    token = "t0k-" + "9" * 32
    with running_server(tmp_path, "--transport", "streamable-http", IMAGEGEN_AUTH_TOKEN=token) as port:
        url = f"http://127.0.0.1:{port}/mcp"
        async with httpx2.AsyncClient() as http:
            missing = await http.post(url, json=INITIALIZE, headers=MCP_HEADERS)
            wrong = await http.post(url, json=INITIALIZE, headers={**MCP_HEADERS, "authorization": "Bearer nope"})
        assert missing.status_code == wrong.status_code == 401
        assert token not in missing.text

        async with (
            httpx2.AsyncClient(headers={"authorization": f"Bearer {token}"}) as http,
            Client(streamable_http_client(url, http_client=http)) as client,
        ):
            result = await client.call_tool("generate_image", {"prompt": "authorised"})
        assert_image_result(result, count=1)


@pytest.mark.parametrize("command", [["serve"], []], ids=["serve", "default-command"])
def test_non_loopback_bind_without_token_is_refused(tmp_path: Path, command: list[str]) -> None:
    env = clean_environ(IMAGEGEN_OUTPUT_DIR=str(tmp_path))
    done = subprocess.run(
        [sys.executable, "-m", "imagegen_mcp", *command, "--transport", "streamable-http", "--host", "0.0.0.0"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "IMAGEGEN_AUTH_TOKEN" in done.stderr and "0.0.0.0" in done.stderr
