"""The stdio transport: the SDK's, plus an answer to every line that is not a JSON-RPC message.

The SDK's stdio reader turns a line it cannot read (not JSON, nested too deep, a lone surrogate, a number or an
array instead of an object) into an exception on the read stream, and the server drops it: a client that wrote
such a line would wait forever. JSON-RPC 2.0 asks for an error instead, -32700 "Parse error" for text that is
not JSON and -32600 "Invalid Request" for JSON that is not a message, with ``"id": null`` where the id cannot
be told. :func:`run_stdio` is :meth:`MCPServer.run_stdio_async` with those answers; everything else (claiming
fd 0 and 1, UTF-8 with replacement characters for bytes that are not UTF-8, the end of stdin ending the session,
both protocol eras) is the SDK's own code. A valid line is parsed once, by the SDK, as before.
"""

from __future__ import annotations

import contextvars
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.stdio import stdio_server
from mcp.shared.message import SessionMessage
from mcp_types import INVALID_REQUEST, PARSE_ERROR, ErrorData, JSONRPCError, RequestId
from pydantic import ValidationError
from pydantic_core import ErrorDetails

if TYPE_CHECKING:
    from mcp.shared._stream_protocols import ReadStream, WriteStream

#: What an Invalid Request answer says was expected.
EXPECTED_MESSAGE = "expected one JSON-RPC 2.0 request, notification or response object"


async def run_stdio(server: MCPServer[Any]) -> None:
    """Serve ``server`` on stdin and stdout until stdin ends, answering each line that is not a message."""
    # The SDK has no public way to run an MCPServer over given streams; run_stdio_async does exactly this.
    lowlevel = server._lowlevel_server
    async with stdio_server() as (read_stream, write_stream):
        messages = AnsweringReadStream(read_stream, write_stream)
        await lowlevel.run(messages, write_stream, lowlevel.create_initialization_options())


class AnsweringReadStream:
    """A transport's read stream less the lines it could not read: each is answered on ``replies`` (the stream
    the server writes its own messages to, so answers never interleave with them) and skipped.

    Other items, and any exception that is not a validation error, pass through as they came.
    """

    def __init__(self, inner: ReadStream[SessionMessage | Exception], replies: WriteStream[SessionMessage]) -> None:
        self._inner = inner
        self._replies = replies

    @property
    def last_context(self) -> contextvars.Context | None:
        """The sending task's context of the last item, which the SDK's server restores for its handler."""
        context: contextvars.Context | None = getattr(self._inner, "last_context", None)
        return context

    async def receive(self) -> SessionMessage | Exception:
        while True:
            item = await self._inner.receive()
            if not isinstance(item, ValidationError):
                return item
            answer = rejection(item)
            if answer is not None:
                await self._replies.send(SessionMessage(answer))

    async def aclose(self) -> None:
        await self._inner.aclose()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> SessionMessage | Exception:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc_val: BaseException | None, exc_tb: TracebackType | None
    ) -> None:
        await self.aclose()


def rejection(error: ValidationError) -> JSONRPCError | None:
    """The answer to a line that failed to validate as a JSON-RPC message; None for a blank line, which is
    whitespace between messages rather than a message."""
    details = error.errors(include_url=False)
    first = details[0]
    if first["type"] == "json_invalid":
        line = first["input"]
        if isinstance(line, str) and not line.strip():
            return None
        # pydantic's message gives the reason and the position, never the text of the line.
        request, error_data = None, ErrorData(code=PARSE_ERROR, message="Parse error", data=first["msg"])
    else:
        request = request_id(details)
        error_data = ErrorData(code=INVALID_REQUEST, message="Invalid Request", data=EXPECTED_MESSAGE)
    # Every field given, so the SDK's writer (which leaves out unset fields) writes "id": null.
    return JSONRPCError(jsonrpc="2.0", id=request, error=error_data)


def request_id(details: list[ErrorDetails]) -> RequestId | None:
    """The id of an invalid message that has a ``method`` (a request with, say, ``params`` that are not an
    object), so that the caller's request ends with this error; None when there is none or it is no valid id.

    The decoded message is the input of every error about a field missing from the envelope itself (location
    ``(member, field)``), and an invalid object lacks ``result`` or ``error`` unless it has both.
    """
    for detail in details:
        message = detail["input"]
        if detail["type"] == "missing" and len(detail["loc"]) == 2 and isinstance(message, dict):
            found = message.get("id")
            valid = isinstance(found, str) or (isinstance(found, int) and not isinstance(found, bool))
            return found if valid and "method" in message else None
    return None
