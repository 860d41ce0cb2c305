"""The protocol features clients expect, through the Python SDK's client: every result and error valid against
its tool's output schema, completions, the prompt, annotations, descriptions, and logs for both the handshake
(``logging/setLevel``) and the 2026-07-28 (per-request log level) protocol versions."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from mcp.client import Client
from mcp_types import (
    LoggingMessageNotificationParams,
    PromptReference,
    ResourceTemplateReference,
    TextContent,
)

from imagegen_mcp.catalog import ProviderSpec
from imagegen_mcp.config import Settings
from imagegen_mcp.errors import ProviderError
from imagegen_mcp.providers.flux_local import FluxLocalProvider
from imagegen_mcp.providers.gemini import GeminiProvider
from imagegen_mcp.providers.runware import RunwareProvider
from imagegen_mcp.server.app import build_server
from imagegen_mcp.testing import FunctionProvider, fails_with
from tests.e2e import INITIALIZE, clean_environ, error_of, exchange_over_stdio

pytestmark = pytest.mark.anyio

BUILTINS: list[ProviderSpec] = [RunwareProvider, FluxLocalProvider, GeminiProvider]


async def test_every_result_and_error_is_valid_against_its_tools_output_schema(
    make_settings: Callable[..., Settings],
) -> None:
    """Success and error results alike (clients such as the TypeScript SDK validate both)."""
    drawing = FunctionProvider(name="drawing", priority=1)
    failing = FunctionProvider(
        fails_with(ProviderError("no credits left", remediation=["Add credits"])), name="failing", priority=2
    )
    calls: list[tuple[str, dict[str, Any], bool]] = [
        ("list_providers", {}, False),
        ("list_providers", {"unexpected": 1}, True),
        ("list_models", {}, False),
        ("list_models", {"provider": "foo"}, True),
        ("generate_image", {"prompt": "a fox", "width": 64, "height": 64}, False),
        ("generate_image", {"prompt": "a fox", "model": "failing:failing_model"}, True),
        ("generate_image", {"prompt": "a fox", "model": "nope"}, True),
        ("generate_image", {"prompt": "a fox", "count": 99, "colour": "red"}, True),
        ("generate_image", {}, True),
    ]
    async with Client(build_server(make_settings(), [*BUILTINS, drawing, failing])) as client:
        schemas = {tool.name: tool.output_schema for tool in (await client.list_tools()).tools}
        for name, arguments, is_error in calls:
            result = await client.call_tool(name, arguments)
            assert result.is_error is is_error, (name, arguments)
            schema = schemas[name]
            assert schema is not None
            jsonschema.validate(result.structured_content, schema)  # raises on a mismatch
            if is_error:
                error = error_of(result)
                assert error["code"] and error["message"] and error["remediation"]
                text = "\n".join(block.text for block in result.content if isinstance(block, TextContent))
                assert f"Error {error['code']}: " in text and "To fix:" in text and "Retryable: " in text
            else:
                assert "error" not in (result.structured_content or {})


async def test_a_result_that_is_not_the_tools_shape_fails_the_schema(make_settings: Callable[..., Settings]) -> None:
    """The check above can fail: the schema rejects a result of another tool and an empty object."""
    async with Client(build_server(make_settings(), BUILTINS)) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        listing = await client.call_tool("list_providers", {})
    generate_schema = tools["generate_image"].output_schema
    assert generate_schema is not None
    for wrong in (listing.structured_content, {}, {"error": {"code": "x"}}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(wrong, generate_schema)


async def test_completions_for_template_and_prompt_arguments(make_settings: Callable[..., Settings]) -> None:
    drawing = FunctionProvider(name="drawing", priority=1)
    async with Client(build_server(make_settings(), [*BUILTINS, drawing])) as client:
        made = await client.call_tool("generate_image", {"prompt": "a fox", "width": 64, "height": 64, "count": 2})
        ids = [image["id"] for image in (made.structured_content or {})["images"]]
        providers = await client.complete(
            ResourceTemplateReference(uri="imagegen://providers/{name}"), {"name": "name", "value": "g"}
        )
        images = await client.complete(
            ResourceTemplateReference(uri="imagegen://images/{image_id}"), {"name": "image_id", "value": ids[0][:8]}
        )
        ratios = await client.complete(PromptReference(name="create_image"), {"name": "aspect_ratio", "value": "16"})
        nothing = await client.complete(
            ResourceTemplateReference(uri="imagegen://unknown/{x}"), {"name": "x", "value": ""}
        )
    assert providers.completion.values == ["gemini"]
    assert sorted(images.completion.values) == sorted(ids)
    assert ratios.completion.values == ["16:9"]
    assert nothing.completion.values == []


async def test_the_create_image_prompt(make_settings: Callable[..., Settings]) -> None:
    async with Client(build_server(make_settings(), BUILTINS)) as client:
        (prompt,) = (await client.list_prompts()).prompts
        got = await client.get_prompt("create_image", {"subject": "a lighthouse at dusk", "aspect_ratio": "16:9"})
    assert prompt.name == "create_image" and prompt.description
    assert [(argument.name, argument.required) for argument in prompt.arguments or []] == [
        ("subject", True),
        ("style", False),
        ("aspect_ratio", False),
    ]
    (message,) = got.messages
    assert isinstance(message.content, TextContent)
    assert "a lighthouse at dusk" in message.content.text and "aspect_ratio 16:9" in message.content.text


async def test_resources_and_templates_are_described(make_settings: Callable[..., Settings]) -> None:
    async with Client(build_server(make_settings(), BUILTINS)) as client:
        resources = (await client.list_resources()).resources
        templates = (await client.list_resource_templates()).resource_templates
    assert {template.uri_template for template in templates} == {
        "imagegen://providers/{name}",
        "imagegen://images/{image_id}",
        "imagegen://images/{image_id}/thumbnail",
        "imagegen://images/{image_id}/details",
        "imagegen://generations/{job_id}",
        "imagegen://jobs/{job_id}",
    }
    for resource in resources:
        assert resource.description and resource.title
    for template in templates:
        assert template.description and template.title


async def test_logs_reach_a_client_that_asks_per_request(make_settings: Callable[..., Settings]) -> None:
    """2026-07-28: a log level in the request's ``_meta`` (the SDK client's ``log_level``)."""
    received: list[LoggingMessageNotificationParams] = []

    async def on_log(params: LoggingMessageNotificationParams) -> None:
        received.append(params)

    server = build_server(make_settings(RUNWARE_API_KEY=""), BUILTINS)
    async with Client(server, log_level="info", logging_callback=on_log) as client:
        result = await client.call_tool("generate_image", {"prompt": "a fox"})
    assert result.is_error
    assert any("skipping runware:juggernaut_pro" in str(params.data) for params in received), received
    async with Client(server, logging_callback=on_log) as client:
        before = len(received)
        await client.call_tool("generate_image", {"prompt": "a fox"})
    assert len(received) == before  # no opt-in, no messages


def test_logging_set_level_on_a_handshake_protocol_version(tmp_path: Path) -> None:
    """2025-06-18: the capability is advertised, ``logging/setLevel`` answered and honoured; stderr unchanged."""
    requests = [
        {"jsonrpc": "2.0", "id": 1, "method": "logging/setLevel", "params": {"level": "info"}},
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "generate_image", "arguments": {"prompt": "a fox"}},
        },
        {"jsonrpc": "2.0", "id": 3, "method": "logging/setLevel", "params": {"level": "loud"}},
    ]
    environ = clean_environ(IMAGEGEN_OUTPUT_DIR=str(tmp_path), IMAGEGEN_LOG_LEVEL="WARNING")
    messages, stderr = exchange_over_stdio([sys.executable, "-m", "imagegen_mcp"], environ, requests)
    answers = {message["id"]: message for message in messages if "id" in message}
    assert answers[INITIALIZE["id"]]["result"]["capabilities"]["logging"] == {}
    assert answers[1]["result"] == {}
    assert answers[2]["result"]["isError"] is True
    assert answers[3]["error"]["code"] == -32602 and "loud" in answers[3]["error"]["message"]
    logged = [m["params"] for m in messages if m.get("method") == "notifications/message"]
    assert any("skipping runware:juggernaut_pro" in params["data"] for params in logged), logged
    assert {params["level"] for params in logged} <= {"info", "warning", "error"}
    assert "skipping" not in stderr  # IMAGEGEN_LOG_LEVEL=WARNING still decides what stderr shows
