"""The real server over stdio, driven by the MCP Inspector's CLI mode.

Each test runs ``npx @modelcontextprotocol/inspector --cli --format json -q --method <method> ... -e KEY=VALUE
--cwd <repo> -- python -m imagegen_mcp`` (the installed binary, not ``npx``, so nothing is fetched). The
Inspector hands the server only a few basic variables (PATH, HOME...) plus the ``-e`` ones. It prints
``{"result": ...}`` on stdout and exits 0, or 5 for an ``isError`` tool result (``EXIT_CODES.TOOL_ERROR``);
anything else is ``{"error": {...}}`` on stderr and another exit status. A tool result whose
``structuredContent`` does not match the tool's ``outputSchema`` is such an error, ``isError`` results
included.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import REPO, clean_environ, write_palette_plugin
from tests.node_clients import node_clients, run

pytestmark = pytest.mark.slow

TIMEOUT_S = 120
TOOL_ERROR_EXIT = 5


def run_inspector(*arguments: str, **server_env: str) -> subprocess.CompletedProcess[str]:
    """Run one Inspector CLI call against ``python -m imagegen_mcp`` started with ``server_env``."""
    env_flags = [flag for key, value in server_env.items() for flag in ("-e", f"{key}={value}")]
    command: list[str | Path] = [
        node_clients().bin("mcp-inspector"),
        "--cli",
        "--format",
        "json",
        "-q",
        *arguments,
        *env_flags,
        "--cwd",
        str(REPO),
        "--",
        sys.executable,
        "-m",
        "imagegen_mcp",
    ]
    return run(command, env=clean_environ(), timeout_s=TIMEOUT_S)


def result_of(done: subprocess.CompletedProcess[str], exit_status: int = 0) -> dict[str, Any]:
    assert done.returncode == exit_status, f"exit {done.returncode}: {done.stderr}"
    result: dict[str, Any] = json.loads(done.stdout)["result"]
    return result


def call_tool(
    tmp_path: Path, name: str, arguments: dict[str, Any], **server_env: str
) -> subprocess.CompletedProcess[str]:
    return run_inspector(
        "--method",
        "tools/call",
        "--tool-name",
        name,
        "--tool-args-json",
        json.dumps(arguments),
        IMAGEGEN_OUTPUT_DIR=str(tmp_path / "out"),
        **server_env,
    )


def test_tools_list_passes_the_schema_portability_check(tmp_path: Path) -> None:
    # --strict: exit 6 when a tool schema has an error-severity portability problem.
    result = result_of(run_inspector("--method", "tools/list", "--strict", IMAGEGEN_OUTPUT_DIR=str(tmp_path)))
    names = {tool["name"] for tool in result["tools"]}
    assert {"list_providers", "list_models", "generate_image"} <= names


def test_list_providers_result_is_structured(tmp_path: Path) -> None:
    result = result_of(call_tool(tmp_path, "list_providers", {}))
    assert result["isError"] is False
    assert {"runware", "gemini", "flux_local"} <= {p["name"] for p in result["structuredContent"]["providers"]}


def test_resources_read_returns_the_provider_status_as_json(tmp_path: Path) -> None:
    result = result_of(
        run_inspector("--method", "resources/read", "--uri", "imagegen://providers", IMAGEGEN_OUTPUT_DIR=str(tmp_path))
    )
    (contents,) = result["contents"]
    assert contents["mimeType"] == "application/json"
    assert {"runware", "gemini", "flux_local"} <= {p["name"] for p in json.loads(contents["text"])["providers"]}


@pytest.mark.parametrize(
    ("name", "arguments", "code"),
    [
        ("generate_image", {"prompt": "a lighthouse at dusk"}, "no_provider_available"),
        ("list_models", {"provider": "foo"}, "provider_not_found"),
    ],
)
def test_errors_are_structured_results(tmp_path: Path, name: str, arguments: dict[str, Any], code: str) -> None:
    result = result_of(call_tool(tmp_path, name, arguments), TOOL_ERROR_EXIT)
    assert result["isError"] is True
    assert result["structuredContent"]["error"]["code"] == code
    assert result["structuredContent"]["error"]["remediation"]


def test_generate_image_with_the_plugin_provider(tmp_path: Path) -> None:
    done = call_tool(
        tmp_path,
        "generate_image",
        {"prompt": "a green square", "model": "palette:solid_green"},
        IMAGEGEN_DEFAULT_PROVIDER="palette",
        PYTHONPATH=write_palette_plugin(tmp_path / "plugin"),
    )
    result = result_of(done)
    assert result["isError"] is False
    (image,) = result["structuredContent"]["images"]
    assert Path(image["path"]).parent == tmp_path / "out"
    assert Path(image["path"]).is_file()
    assert [block["type"] for block in result["content"]] == ["text", "image", "resource_link"]
