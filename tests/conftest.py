from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from imagegen_mcp.config import Settings
from tests.fakes.gemini_server import GEMINI_KEY, FakeGeminiServer


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Settings from an explicit environment only (never the developer's), with a private output folder."""

    def make(**environ: str) -> Settings:
        return Settings.load({"IMAGEGEN_OUTPUT_DIR": str(tmp_path / "images"), **environ})

    return make


@pytest.fixture
def api() -> Iterator[FakeGeminiServer]:
    """The loopback Gemini API, accepting only :data:`GEMINI_KEY`."""
    with FakeGeminiServer(api_keys={GEMINI_KEY}) as server:
        yield server
