"""The job and history layer's cost per call: generate_image through a real MCP client (in memory) with the
SQLite history, against the same server whose history writes are skipped, alternating in one run.

    python -m bench.job_overhead [--calls 40] [--rounds 7]

The provider answers at once with a prepared photo-like 512x512 PNG, so what differs between the two is the
job layer's own work: recording the job, its progress, its end and its image. Each round alternates the two
servers call by call and takes the median of each; the table gives the median of the rounds' differences with
the lowest and highest round.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import secrets
import statistics
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
from mcp.client import Client

from bench.common import machine, median_ms, table
from imagegen_mcp.config import Settings
from imagegen_mcp.history import (
    Finish,
    Generation,
    HistoryStore,
    ImageRecord,
    Job,
    JobKind,
    LinkedImage,
    NewImage,
    ProviderSpend,
    SQLiteHistory,
)
from imagegen_mcp.providers.base import GeneratedImage, GenerationRequest, Progress, ProviderResult
from imagegen_mcp.server.app import build_server
from imagegen_mcp.testing import FunctionModelConfig, FunctionProvider, photo_like_png

TARGET_MS = 2.0


@functools.cache
def photo() -> bytes:
    return photo_like_png(512, 512, 3)


async def instant(request: GenerationRequest, model: FunctionModelConfig, progress: Progress) -> ProviderResult:
    await progress.update("drawing", 0.5)
    return ProviderResult(images=[GeneratedImage(photo(), "image/png", request.seed)])


class SkippedHistory(HistoryStore):
    """Hands out jobs and writes nothing: the job layer runs exactly as it does, without its history writes."""

    def __init__(self, path: Path) -> None:
        self._template: Job | None = None
        self._real = SQLiteHistory(path)  # only to make the first job's shape once

    async def create_job(self, kind: JobKind, request: dict[str, Any], *, poll_interval_ms: int = 1000) -> Job:
        if self._template is None:
            self._template = await self._real.create_job(kind, request, poll_interval_ms=poll_interval_ms)
        return dataclasses.replace(self._template, id=f"job_{secrets.token_hex(8)}")

    async def mark_running(self, job_id: str) -> None:
        return None

    async def update_progress(self, job_id: str, progress: float, message: str | None = None) -> None:
        return None

    async def add_images(self, job_id: str, images: Sequence[NewImage]) -> None:
        return None

    async def finish_job(self, job_id: str, finish: Finish) -> Job:
        assert self._template is not None
        return self._template

    async def get_job(self, job_id: str) -> Job | None:
        return None

    async def recent_jobs(self, limit: int = 20) -> list[Job]:
        return []

    async def recent_generations(self, limit: int = 20, *, include_deleted: bool = False) -> list[Generation]:
        return []

    async def get_generation(self, job_id: str, *, include_deleted: bool = False) -> Generation | None:
        return None

    async def mark_interrupted_at_start(self) -> int:
        return 0

    async def search_images(self, query: str | None = None, **filters: Any) -> list[ImageRecord]:
        return []

    async def get_image(self, image_id: str) -> ImageRecord | None:
        return None

    async def delete_image(self, image_id: str) -> ImageRecord | None:
        return None

    async def parents_of(self, image_id: str) -> list[LinkedImage]:
        return []

    async def children_of(self, image_id: str) -> list[LinkedImage]:
        return []

    async def spend(self, since: datetime, until: datetime | None = None, **filters: Any) -> dict[str, ProviderSpend]:
        return {}

    async def integrity_check(self) -> list[str]:
        return []

    async def aclose(self) -> None:
        await self._real.aclose()


def settings_in(folder: Path) -> Settings:
    return Settings.load({"IMAGEGEN_OUTPUT_DIR": str(folder / "images"), "IMAGEGEN_DB": str(folder / "h.sqlite3")})


async def one_call(client: Client) -> float:
    started = time.perf_counter()
    result = await client.call_tool("generate_image", {"prompt": "a lighthouse at dusk", "width": 512, "height": 512})
    assert not result.is_error, result.content
    return time.perf_counter() - started


async def round_ms(calls: int) -> tuple[float, float]:
    with_history = build_server(settings_in(Path(tempfile.mkdtemp())), [FunctionProvider(instant, name="photo")])
    skipped = build_server(
        settings_in(Path(tempfile.mkdtemp())), [FunctionProvider(instant, name="photo")], history=SkippedHistory
    )
    async with Client(with_history) as recorded, Client(skipped) as unrecorded:
        await one_call(recorded), await one_call(unrecorded)  # warm up both
        on: list[float] = []
        off: list[float] = []
        for _ in range(calls):
            on.append(await one_call(recorded))
            off.append(await one_call(unrecorded))
    return median_ms(on), median_ms(off)


async def main(calls: int, rounds: int) -> None:
    results = [await round_ms(calls) for _ in range(rounds)]
    differences = [on - off for on, off in results]
    difference = statistics.median(differences)
    rows: list[list[object]] = [
        ["generate_image, history skipped", statistics.median(off for _, off in results), "", ""],
        ["generate_image, SQLite history", statistics.median(on for on, _ in results), "", ""],
        [
            "job and history layer per call",
            difference,
            f"{min(differences):.2f} .. {max(differences):.2f}",
            "met" if max(differences) <= TARGET_MS else ("met (median)" if difference <= TARGET_MS else "missed"),
        ],
    ]
    print(
        table(
            f"Job and history layer, in-memory MCP client, 512x512 photo-like PNG (median of {rounds} rounds of "
            f"{calls} alternating calls; {machine()})",
            ["what", "median ms", "spread ms (rounds)", f"target <= {TARGET_MS:g} ms"],
            rows,
        )
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=7)
    options = parser.parse_args()
    anyio.run(main, options.calls, options.rounds)
