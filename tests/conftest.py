from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from imagegen_mcp.config import Settings
from tests.fakes.gemini_server import GEMINI_KEY, FakeGeminiServer
from tests.fakes.runware_api import FakeRunwareAPI

if TYPE_CHECKING:
    from tests.fakes.tiny_pipelines import TinyPipelines


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Settings from an explicit environment only (never the developer's), with a private output folder."""

    def make(**environ: str) -> Settings:
        return Settings.load(
            {
                "IMAGEGEN_OUTPUT_DIR": str(tmp_path / "images"),
                "IMAGEGEN_DB": str(tmp_path / "history.sqlite3"),
                **environ,
            }
        )

    return make


@pytest.fixture
def api() -> Iterator[FakeGeminiServer]:
    """The loopback Gemini API, accepting only :data:`GEMINI_KEY`."""
    with FakeGeminiServer(api_keys={GEMINI_KEY}) as server:
        yield server


@pytest.fixture
def runware() -> Iterator[FakeRunwareAPI]:
    """The loopback Runware API (WebSocket and REST on one port), accepting only its default key."""
    with FakeRunwareAPI() as server:
        yield server


@pytest.fixture(scope="session")
def tiny_pipelines(tmp_path_factory: pytest.TempPathFactory) -> TinyPipelines:
    """The tiny random-weight pipelines, built once per test session (imported here only when a test needs
    them: building imports torch and diffusers)."""
    from tests.fakes.tiny_pipelines import ensure_tiny_pipelines

    return ensure_tiny_pipelines(tmp_path_factory.getbasetemp() / "tiny_pipelines")
