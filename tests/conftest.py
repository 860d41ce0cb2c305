from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from imagegen_mcp.config import Settings


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Settings from an explicit environment only (never the developer's), with a private output folder."""

    def make(**environ: str) -> Settings:
        return Settings.load({"IMAGEGEN_OUTPUT_DIR": str(tmp_path / "images"), **environ})

    return make
