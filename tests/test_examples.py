"""The provider guide's example runs, and the README's way of testing a provider works as written."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
from mcp.client import Client

from imagegen_mcp.config import Settings
from imagegen_mcp.errors import ProviderError
from imagegen_mcp.server.app import build_server
from imagegen_mcp.testing import FunctionProvider, fails_with
from tests.e2e import REPO, assert_image_result, clean_environ

EXAMPLE = REPO / "examples" / "my_provider.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("my_provider", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # pydantic resolves the annotations through it
    spec.loader.exec_module(module)
    return module


def test_the_example_provider_runs_as_a_script(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)],
        capture_output=True,
        text=True,
        env=clean_environ(IMAGEGEN_OUTPUT_DIR=str(tmp_path)),
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    path = Path(done.stdout.strip())
    assert path.parent == tmp_path and path.read_bytes().startswith(b"\x89PNG")


@pytest.mark.anyio
async def test_the_readme_way_of_testing_a_provider(make_settings: Callable[..., Settings]) -> None:
    gradient = load_example().GradientProvider
    flaky = FunctionProvider(fails_with(ProviderError("503", retryable=True)), name="flaky", priority=1)
    server = build_server(make_settings(GRADIENT_API_KEY="k"), providers=[flaky, gradient])
    async with Client(server) as client:
        result = await client.call_tool("generate_image", {"prompt": "a sunset", "width": 128, "height": 128})
        without_key = build_server(make_settings(), providers=[gradient])
    assert_image_result(result, count=1)
    structured = result.structured_content or {}
    assert structured["model"] == "gradient:sunset" and structured["fell_back"]
    assert [a["outcome"] for a in structured["attempts"]] == ["failed", "succeeded"]
    async with Client(without_key) as client:
        listing = (await client.call_tool("list_providers", {})).structured_content or {}
    (status,) = listing["providers"]
    assert status["reason"] == "GRADIENT_API_KEY is not set"
    assert status["remediation"] == ["Set GRADIENT_API_KEY in the server's environment"]
