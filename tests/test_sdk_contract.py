"""The few things the server relies on in the ``mcp`` SDK, each failing with a message that names what changed."""

from __future__ import annotations

from typing import Any

import pytest
from mcp.client import Client
from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult, TextContent
from pydantic import BaseModel, ConfigDict

from imagegen_mcp.server.app import READ_ONLY, _tool, raw_arguments
from imagegen_mcp.server.schemas import output_schema

pytestmark = pytest.mark.anyio


class Echo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    count: int


class Echoed(BaseModel):
    arguments: dict[str, Any]


async def test_a_tool_without_parameters_receives_every_raw_argument() -> None:
    """A tool function that declares no parameters is passed nothing and validated against nothing by the SDK;
    the arguments as sent are in the request's params (``ServerRequestContext.params``)."""
    seen: list[dict[str, Any]] = []

    async def echo(ctx: Context) -> CallToolResult:
        arguments = raw_arguments(ctx)
        seen.append(arguments)
        return CallToolResult(
            content=[TextContent(type="text", text="ok")], structured_content={"arguments": arguments}
        )

    server: MCPServer[Any] = MCPServer(
        "contract", tools=[_tool(echo, Echo, Echoed, title="Echo", annotations=READ_ONLY)]
    )
    sent = {"count": "not a number", "unknown": [1, {"deep": None}], "nested": {"a": 1}}
    async with Client(server) as client:
        (tool,) = (await client.list_tools()).tools
        result = await client.call_tool("echo", sent)
    assert seen == [sent], "the SDK changed or dropped tool arguments before the tool ran"
    assert not result.is_error, "the SDK rejected arguments of a tool that declares no parameters"
    assert tool.input_schema["properties"]["count"] == {"type": "integer"}, "the published input schema is not ours"
    assert tool.output_schema == output_schema(Echoed), "the hand-built output schema was not published as it is"
