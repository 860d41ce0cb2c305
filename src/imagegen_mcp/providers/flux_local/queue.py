"""First come, first served access to one device, with each waiting caller told its place in line."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio


class _Ticket:
    def __init__(self) -> None:
        #: Set whenever the line moves; replaced by the owner before each wait.
        self.moved = anyio.Event()


class DeviceQueue:
    """One holder at a time, in arrival order. A caller that leaves the line (finished or cancelled) lets
    everyone behind it move up; a waiting caller hears its new position each time it changes."""

    def __init__(self) -> None:
        self._line: list[_Ticket] = []

    def __len__(self) -> int:
        """Callers holding or waiting for the device."""
        return len(self._line)

    @asynccontextmanager
    async def turn(self, on_wait: Callable[[int], Awaitable[None]]) -> AsyncIterator[None]:
        """Hold the device for the body; ``on_wait(ahead)`` runs while ``ahead`` callers are in front."""
        ticket = _Ticket()
        self._line.append(ticket)
        try:
            reported = 0
            while (ahead := self._line.index(ticket)) > 0:
                # A fresh event before reporting: a move during on_wait is then not missed.
                ticket.moved = anyio.Event()
                if ahead != reported:
                    await on_wait(ahead)
                    reported = ahead
                await ticket.moved.wait()
            yield
        finally:
            self._line.remove(ticket)
            for waiting in self._line:
                waiting.moved.set()
