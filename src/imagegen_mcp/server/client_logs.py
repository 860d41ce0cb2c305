"""Server logs sent to clients that ask for them with ``logging/setLevel``, as ``notifications/message``.

``logging/setLevel`` belongs to the handshake protocol versions (up to 2025-11-25). ``MCPServer`` does not
serve it, so a middleware (the SDK's public hook for wrapping requests) answers it, advertises the ``logging``
capability in the ``initialize`` result, and subscribes the connection to this module's log handler at the
level asked for. The 2026-07-28 revision replaced it with a per-request opt-in (a log level in the request's
``_meta``): records logged while a tool call runs go to that call's session, whose own gate applies the level
the request asked for. stderr keeps receiving everything at ``IMAGEGEN_LOG_LEVEL`` as before.

Records are scrubbed of secrets before they leave (the redacting filter runs on every root handler), the SDK's
own loggers are never forwarded (sending a notification logs, which would loop), and sending never blocks or
fails the code that logged.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.session import ServerSession
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp_types import INVALID_PARAMS, LoggingLevel
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

from imagegen_mcp.logs import RedactingFilter

#: MCP's levels (RFC 5424) and the Python level each one starts at.
MCP_LEVELS: dict[LoggingLevel, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "notice": logging.INFO + 5,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
    "alert": logging.CRITICAL + 5,
    "emergency": logging.CRITICAL + 10,
}
#: Loggers whose records stay on stderr: the transport's own (forwarding them would feed back).
_NOT_FORWARDED = ("mcp", "mcp_types", "httpx", "httpcore", "uvicorn", "sse_starlette", "anyio", "asyncio")


# Serving logging/setLevel clients is this module's purpose; the SDK's notice that the capability is deprecated
# in the 2026-07-28 protocol is no news to the person reading stderr.
warnings.filterwarnings("ignore", message="The logging capability is deprecated", category=MCPDeprecationWarning)


def mcp_level(levelno: int) -> LoggingLevel:
    """The MCP level of a Python log level: the highest MCP level at or below it."""
    return max(
        (level for level, number in MCP_LEVELS.items() if number <= levelno),
        key=MCP_LEVELS.__getitem__,
        default="debug",
    )


@dataclass(frozen=True)
class _Target:
    """Where to send records: a session, the loop that serves it, the least level, and (for a subscription)
    the key to forget it by when sending fails."""

    session: ServerSession
    loop: asyncio.AbstractEventLoop
    levelno: int = logging.NOTSET
    key: int | None = None


#: The session of the tool call being served in this context (set by :meth:`ClientLogHandler.serving`).
_serving: contextvars.ContextVar[_Target | None] = contextvars.ContextVar("imagegen_serving", default=None)


class ClientLogHandler(logging.Handler):
    """Forwards log records to every subscribed client connection at or above its level, and to the session
    of the tool call in progress where the protocol version has per-request log levels."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__(level=logging.DEBUG)
        self.addFilter(RedactingFilter(secrets))
        self._subscribers: dict[int, _Target] = {}

    def subscribe(self, key: int, session: ServerSession, level: LoggingLevel) -> None:
        """Send this connection's client every record at ``level`` or above (replacing an earlier level)."""
        levelno = MCP_LEVELS[level]
        self._subscribers[key] = _Target(session, asyncio.get_running_loop(), levelno, key)
        root = logging.getLogger()
        # The stderr handler keeps its own level; records below the root's never reach any handler.
        root.setLevel(min(root.level, levelno))

    @contextmanager
    def serving(self, session: ServerSession) -> Iterator[None]:
        """Within the block, records also go to ``session`` when its protocol has per-request log levels (the
        session drops those below the level the request asked for)."""
        if session.protocol_version in HANDSHAKE_PROTOCOL_VERSIONS:
            yield
            return
        token = _serving.set(_Target(session, asyncio.get_running_loop()))
        try:
            yield
        finally:
            _serving.reset(token)

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.split(".")[0] in _NOT_FORWARDED:
            return
        targets = [target for target in self._subscribers.values() if record.levelno >= target.levelno]
        serving = _serving.get()
        if serving is not None:
            targets.append(serving)
        if not targets:
            return
        data, level = self.format(record), mcp_level(record.levelno)
        for target in targets:
            target.loop.call_soon_threadsafe(self._send, target, level, data, record.name)

    def _send(self, target: _Target, level: LoggingLevel, data: str, name: str) -> None:
        async def send() -> None:
            try:
                await target.session.send_log_message(level, data, logger=name)
            except Exception:  # the client is gone: stop sending to it
                if target.key is not None:
                    self._subscribers.pop(target.key, None)

        target.loop.create_task(send())

    def middleware(self) -> Any:
        """The server middleware that answers ``logging/setLevel`` and advertises the capability."""

        async def handle(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
            if ctx.method == "logging/setLevel" and ctx.session.protocol_version in HANDSHAKE_PROTOCOL_VERSIONS:
                level = (ctx.params or {}).get("level")
                if level not in MCP_LEVELS:
                    known = ", ".join(MCP_LEVELS)
                    raise MCPError(code=INVALID_PARAMS, message=f"Unknown log level {level!r}; one of {known}")
                # One subscription per connection: its client params are the same object for all its requests.
                self.subscribe(id(ctx.session.client_params or ctx.session), ctx.session, cast(LoggingLevel, level))
                return {}
            result = await call_next(ctx)
            if ctx.method == "initialize" and isinstance(result, dict):
                capabilities = result.setdefault("capabilities", {})
                if isinstance(capabilities, dict):
                    capabilities.setdefault("logging", {})
            return result

        return handle
