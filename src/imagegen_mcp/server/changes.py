"""Telling connected clients that the catalog changed (the config file was read again), in both protocol eras.

A 2026-07-28 client opens a ``subscriptions/listen`` stream and gets the events it asked for from the server's
subscription bus. A handshake-era client gets ``notifications/resources/list_changed`` on its connection, which
the SDK sends only when the server advertised ``resources.listChanged``: a middleware does that in the
``initialize`` result and remembers a session of each such connection (its client params are one object for
all its requests), the most recent :data:`MAX_CONNECTIONS` of them, since the SDK says nothing when one closes.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.session import ServerSession
from mcp.server.subscriptions import InMemorySubscriptionBus, ResourcesListChanged, ResourceUpdated
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

logger = logging.getLogger(__name__)

#: Handshake connections remembered for change notifications; older ones are forgotten first.
MAX_CONNECTIONS = 1000


class CatalogChanges:
    def __init__(self) -> None:
        #: Pass to ``MCPServer(subscriptions=...)``: ``subscriptions/listen`` streams read from it.
        self.bus = InMemorySubscriptionBus()
        self._sessions: OrderedDict[int, ServerSession] = OrderedDict()

    def middleware(self) -> Any:
        """The server middleware that advertises ``resources.listChanged`` and keeps handshake connections."""

        async def handle(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
            result = await call_next(ctx)
            session = ctx.session
            if session.client_params is not None and session.protocol_version in HANDSHAKE_PROTOCOL_VERSIONS:
                self._sessions[id(session.client_params)] = session
                self._sessions.move_to_end(id(session.client_params))
                while len(self._sessions) > MAX_CONNECTIONS:
                    self._sessions.popitem(last=False)
            if ctx.method == "initialize" and isinstance(result, dict):
                resources = result.get("capabilities", {}).get("resources")
                if isinstance(resources, dict):
                    resources["listChanged"] = True
            return result

        return handle

    async def announce(self, uris: Sequence[str]) -> None:
        """The resource list changed, and so did the resources ``uris``: tell every client that can hear it."""
        await self.bus.publish(ResourcesListChanged())
        for uri in uris:
            await self.bus.publish(ResourceUpdated(uri=uri))
        for key, session in list(self._sessions.items()):
            try:
                await session.send_resource_list_changed()
            except Exception:  # the client went away: no reason to fail the reload
                self._sessions.pop(key, None)
        logger.debug("told %d handshake connection(s) and the listen streams", len(self._sessions))
