"""What runs while the server serves: the history store, the job runner, the budget, open from the first client
session to the last.

Transports open sessions differently (stdio one for the process, streamable HTTP one for the server, SSE one per
connection), so the runtime counts them: the first opens the history and marks what an earlier process left
unfinished as interrupted, the last cancels the jobs still running, closes the history and the providers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio

from imagegen_mcp.history import HistoryStore, SQLiteHistory, default_db_path
from imagegen_mcp.jobs import DailyBudget, JobRunner
from imagegen_mcp.listings import Usage, usage
from imagegen_mcp.service import ImageService

#: Opens the job and history store at a path (the embedded SQLite store by default).
HistoryFactory = Callable[[Path], HistoryStore]


class Runtime:
    def __init__(self, service: ImageService, history: HistoryFactory = SQLiteHistory) -> None:
        self.service = service
        self.db_path = service.settings.db_path or default_db_path()
        self._history_factory = history
        self._sessions = 0
        self._lock = anyio.Lock()
        self._jobs: JobRunner | None = None

    @property
    def jobs(self) -> JobRunner:
        if self._jobs is None:
            raise RuntimeError("the server runtime is not open (no session)")
        return self._jobs

    @property
    def history(self) -> HistoryStore:
        return self.jobs.history

    @asynccontextmanager
    async def session(self) -> AsyncIterator[Runtime]:
        """Open the runtime for one client session (the first opens it, the last closes it)."""
        async with self._lock:
            if self._sessions == 0:
                await self._open()
            self._sessions += 1
        try:
            yield self
        finally:
            with anyio.CancelScope(shield=True):
                async with self._lock:
                    self._sessions -= 1
                    if self._sessions == 0:
                        await self._close()

    async def usage(self) -> Usage:
        return await usage(self.history, self.service.settings.daily_budget_usd)

    async def _open(self) -> None:
        history = self._history_factory(self.db_path)
        budget = self.service.settings.daily_budget_usd
        self.service.budget = DailyBudget(budget, history) if budget is not None else None
        self._jobs = JobRunner(self.service, history)
        await self._jobs.open()

    async def _close(self) -> None:
        jobs, self._jobs = self._jobs, None
        try:
            if jobs is not None:
                await jobs.aclose()
        finally:
            self.service.budget = None
            await self.service.aclose()
