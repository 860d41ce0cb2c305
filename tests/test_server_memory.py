"""End to end through a real MCP client connected in memory."""

from __future__ import annotations

import base64
import io
import json
import logging
from collections.abc import Callable
from typing import Any

import pytest
from mcp.client import Client
from mcp_types import BlobResourceContents, TextResourceContents
from PIL import Image

from imagegen_mcp.catalog import ProviderSpec
from imagegen_mcp.config import Settings
from imagegen_mcp.providers.flux_local import FluxLocalProvider
from imagegen_mcp.providers.gemini import GeminiProvider
from imagegen_mcp.providers.runware import RunwareProvider
from imagegen_mcp.server.app import build_server
from tests.e2e import assert_image_result, error_of, text_of
from tests.fakes.palette import BackupPaletteProvider, PaletteProvider

pytestmark = pytest.mark.anyio

BUILTINS: list[ProviderSpec] = [RunwareProvider, FluxLocalProvider, GeminiProvider]
WITH_PALETTE: list[ProviderSpec] = [*BUILTINS, PaletteProvider, BackupPaletteProvider]


async def test_tools_are_listed_with_schemas(make_settings: Callable[..., Settings]) -> None:
    async with Client(build_server(make_settings(), BUILTINS)) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert set(tools) == {
        "list_providers",
        "list_models",
        "search_models",
        "generate_image",
        "edit_image",
        "get_job",
        "cancel_job",
        "search_images",
        "delete_image",
    }
    schema = tools["generate_image"].input_schema
    assert schema["required"] == ["prompt"]
    assert schema["properties"]["prompt"]["minLength"] == 1
    assert schema["properties"]["count"]["maximum"] == 4
    assert schema["properties"]["width"] == {
        "type": "integer",
        "minimum": 64,
        "maximum": 4096,
        "description": "Pixels; default: the model's.",
    }
    assert schema["additionalProperties"] is False
    assert "aspect_ratio" in schema["properties"] and "fallback" in schema["properties"]
    for name in ("list_providers", "list_models", "search_images", "get_job"):
        annotations = tools[name].annotations
        assert annotations is not None and annotations.read_only_hint and annotations.idempotent_hint
    creating = tools["generate_image"].annotations
    assert creating is not None
    assert (creating.read_only_hint, creating.destructive_hint, creating.open_world_hint) == (False, False, True)
    for tool in tools.values():
        assert tool.output_schema is not None
        assert tool.output_schema["oneOf"][-1] == {"required": ["error"]}
        assert tool.description and "\n" not in tool.description and "  " not in tool.description
        assert "title" not in json.dumps(tool.input_schema)
    assert "images" in (tools["generate_image"].output_schema or {})["properties"]


async def test_without_keys_or_gpu_nothing_is_available(make_settings: Callable[..., Settings]) -> None:
    async with Client(build_server(make_settings(), BUILTINS)) as client:
        providers = (await client.call_tool("list_providers", {})).structured_content
        assert providers is not None
        statuses = {p["name"]: p for p in providers["providers"]}
        assert set(statuses) == {"runware", "flux_local", "gemini"}
        for status in statuses.values():
            assert status["available"] is False
            assert status["reason"]
            assert status["remediation"]
        assert providers["effective_order"] == ["runware", "flux_local", "gemini"]
        assert providers["next_generation"]["model"] is None

        result = await client.call_tool("generate_image", {"prompt": "a lighthouse"})
    assert result.is_error
    error = error_of(result)
    assert error["code"] == "no_provider_available"
    remediation = " ".join(error["remediation"])
    assert "RUNWARE_API_KEY" in remediation and "GEMINI_API_KEY" in remediation
    assert error["attempts"][0]["outcome"] == "skipped"
    assert "RUNWARE_API_KEY" in text_of(result)


async def test_generation_returns_preview_link_and_provenance(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(IMAGEGEN_DEFAULT_PROVIDER="palette", IMAGEGEN_PREVIEW_MAX_PX="128")
    async with Client(build_server(settings, WITH_PALETTE)) as client:
        result = await client.call_tool(
            "generate_image", {"prompt": "red square", "width": 512, "height": 256, "seed": 9, "count": 2}
        )
        images = assert_image_result(result, count=2, preview_max_px=128)
        structured = result.structured_content
        assert structured is not None
        assert structured["provider"] == "palette" and structured["model"] == "palette:solid_red"
        assert structured["parameters"]["seed"] == 9
        assert [image["seed"] for image in images] == [9, 10]
        assert structured["cost_usd"] == pytest.approx(0.002)
        assert structured["fell_back"] is False
        assert structured["elapsed_ms"] >= 0

        contents = (await client.read_resource(images[0]["uri"])).contents
        assert len(contents) == 1 and isinstance(contents[0], BlobResourceContents)
        assert contents[0].mime_type == "image/png"
        full = base64.b64decode(contents[0].blob)
        assert full == open(images[0]["path"], "rb").read()  # noqa: SIM115
        assert Image.open(io.BytesIO(full)).size == (512, 256)

        recent = (await client.read_resource("imagegen://generations/recent")).contents[0]
        assert isinstance(recent, TextResourceContents) and images[0]["id"] in recent.text


async def test_fallback_from_an_unavailable_default_is_in_the_trace(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(IMAGEGEN_DEFAULT_PROVIDER="palette", PALETTE_AVAILABLE="false")
    async with Client(build_server(settings, WITH_PALETTE)) as client:
        providers = (await client.call_tool("list_providers", {})).structured_content
        assert providers is not None
        assert providers["next_generation"]["model"] == "backup:solid_blue"
        result = await client.call_tool("generate_image", {"prompt": "x"})
    assert_image_result(result, count=1)
    structured = result.structured_content
    assert structured is not None
    assert structured["fell_back"] is True
    assert structured["model"] == "backup:solid_blue"
    assert structured["attempts"][0] == {
        "provider": "palette",
        "model": "solid_red",
        "outcome": "skipped",
        "code": "provider_unavailable",
        "reason": "PALETTE_AVAILABLE is false",
        "elapsed_ms": None,
    }
    assert "Fallback: palette:solid_red skipped" in text_of(result)


@pytest.mark.parametrize(
    ("arguments", "code", "mentions"),
    [
        ({"prompt": ""}, "invalid_request", "prompt"),
        ({"prompt": "   "}, "invalid_request", "prompt"),
        ({"prompt": "x", "width": 0}, "invalid_request", "width"),
        ({"prompt": "x", "count": 99}, "invalid_request", "count"),
        ({"prompt": "x", "seed": "abc"}, "invalid_request", "seed"),
        ({"prompt": "x", "colour": "red"}, "invalid_request", "colour"),
        ({}, "invalid_request", "prompt"),
        ({"prompt": "x", "model": "no_such_model"}, "model_not_found", "palette:solid_red"),
        ({"prompt": "x", "provider": "openai"}, "provider_not_found", "openai"),
        ({"prompt": "x", "model": "solid_red", "provider": "backup"}, "invalid_request", "belongs to provider"),
        ({"prompt": "x", "width": 1024, "aspect_ratio": "1:1"}, "invalid_request", "aspect_ratio"),
    ],
)
async def test_invalid_arguments_give_structured_errors(
    make_settings: Callable[..., Settings], arguments: dict[str, Any], code: str, mentions: str
) -> None:
    settings = make_settings(IMAGEGEN_DEFAULT_PROVIDER="palette")
    async with Client(build_server(settings, WITH_PALETTE)) as client:
        result = await client.call_tool("generate_image", arguments)
        assert result.is_error
        error = error_of(result)
        assert error["code"] == code
        assert mentions in error["message"]
        assert error["remediation"]
        # The server keeps serving.
        after = await client.call_tool("generate_image", {"prompt": "still here"})
        assert not after.is_error


async def test_list_models_groups_and_filters(make_settings: Callable[..., Settings]) -> None:
    async with Client(build_server(make_settings(), WITH_PALETTE)) as client:
        everything = (await client.call_tool("list_models", {})).structured_content
        only = (await client.call_tool("list_models", {"provider": "palette"})).structured_content
        unknown = await client.call_tool("list_models", {"provider": "nope"})
    assert everything is not None and only is not None
    assert [g["provider"] for g in everything["providers"]] == ["backup", "flux_local", "gemini", "palette", "runware"]
    (palette,) = only["providers"]
    green = next(m for m in palette["models"] if m["key"] == "solid_green")
    assert green["id"] == "palette:solid_green"
    assert green["capabilities"]["max_resolution"] == 512
    assert green["capabilities"]["supports_negative_prompt"] is True
    assert green["capabilities"]["default_steps"] == 6
    assert [m["default"] for m in palette["models"]] == [True, False]
    assert unknown.is_error and error_of(unknown)["code"] == "provider_not_found"


async def test_status_resources(make_settings: Callable[..., Settings]) -> None:
    async with Client(build_server(make_settings(), WITH_PALETTE)) as client:
        listed = {str(r.uri) for r in (await client.list_resources()).resources}
        templates = {t.uri_template for t in (await client.list_resource_templates()).resource_templates}
        one = (await client.read_resource("imagegen://providers/palette")).contents[0]
        models = (await client.read_resource("imagegen://models")).contents[0]
    assert {"imagegen://providers", "imagegen://models", "imagegen://generations/recent"} <= listed
    assert {"imagegen://providers/{name}", "imagegen://images/{image_id}"} <= templates
    assert isinstance(one, TextResourceContents) and '"available": true' in one.text
    assert isinstance(models, TextResourceContents) and "runware:juggernaut_pro" in models.text


async def test_progress_is_reported_in_increasing_order(make_settings: Callable[..., Settings]) -> None:
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    settings = make_settings(IMAGEGEN_DEFAULT_PROVIDER="palette", PALETTE_FAIL="server_error")
    async with Client(build_server(settings, WITH_PALETTE)) as client:
        result = await client.call_tool("generate_image", {"prompt": "x"}, progress_callback=on_progress)
    assert not result.is_error
    assert len(seen) >= 3
    assert seen == sorted(seen) and len(set(seen)) == len(seen)


async def test_secrets_never_reach_results_or_logs(
    make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    secret = "pk-live-0123456789abcdef"
    settings = make_settings(IMAGEGEN_DEFAULT_PROVIDER="palette", PALETTE_FAIL="leaky", PALETTE_API_KEY=secret)
    caplog.set_level(logging.INFO)
    async with Client(build_server(settings, WITH_PALETTE)) as client:
        result = await client.call_tool("generate_image", {"prompt": "x", "fallback": "strict"})
    assert result.is_error
    assert error_of(result)["code"] == "authentication_failed"
    assert secret not in str(result.model_dump())
    assert "***" in text_of(result)
    handler_output = [h.format(r) for h in logging.getLogger().handlers for r in caplog.records if h.filters]
    assert handler_output and not any(secret in line for line in handler_output)
