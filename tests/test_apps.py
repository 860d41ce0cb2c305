"""The MCP App without a browser: what the tool list and the resources carry, what a client without Apps support
gets (the same results as before), thumbnails and image details with lineage, and the page's self-containment."""

from __future__ import annotations

import base64
import io
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from mcp import MCPError
from mcp.client import Client
from mcp.server.apps import APP_MIME_TYPE, EXTENSION_ID
from mcp_types import (
    BlobResourceContents,
    CallToolResult,
    ImageContent,
    ResourceLink,
    TextContent,
    TextResourceContents,
)
from PIL import Image

from imagegen_mcp.config import Settings
from imagegen_mcp.providers.base import ImageInputs
from imagegen_mcp.results import GenerateImageOutput, summary
from imagegen_mcp.server.app import build_server
from imagegen_mcp.server.apps import APP_URI, UI_META, page
from imagegen_mcp.testing import FunctionModelConfig, FunctionProvider
from tests.browser import apps_client_extension
from tests.e2e import assert_image_result, text_of

pytestmark = pytest.mark.anyio

WITH_VIEW = {"generate_image", "edit_image", "search_images"}
EDITOR = FunctionModelConfig(key="editor", display_name="Editor", inputs=ImageInputs(image_to_image=True))


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


def server_for(settings: Settings) -> Any:
    return build_server(settings, [FunctionProvider(name="studio", models=[EDITOR], settings=settings)])


async def test_three_tools_point_at_the_view_and_the_tool_list_grows_by_that_alone(settings: Settings) -> None:
    async with Client(server_for(settings)) as client:
        tools = (await client.list_tools()).tools
        assert client.server_capabilities.extensions == {EXTENSION_ID: {}}
    assert {tool.name for tool in tools if tool.meta} == WITH_VIEW
    assert all(tool.meta == UI_META == {"ui": {"resourceUri": APP_URI}} for tool in tools if tool.name in WITH_VIEW)
    listed = [tool.model_dump(mode="json", by_alias=True, exclude_none=True) for tool in tools]
    without = [{key: value for key, value in tool.items() if key != "_meta"} for tool in listed]
    growth = len(json.dumps(listed, separators=(",", ":"))) - len(json.dumps(without, separators=(",", ":")))
    assert growth == 3 * len(',"_meta":{"ui":{"resourceUri":"ui://imagegen/viewer.html"}}')


async def test_the_view_resource_is_an_mcp_app_page_with_a_strict_policy(settings: Settings) -> None:
    async with Client(server_for(settings), extensions=[apps_client_extension()]) as client:
        [content] = (await client.read_resource(APP_URI)).contents
    assert isinstance(content, TextResourceContents)
    assert content.mime_type == APP_MIME_TYPE
    # An empty policy: no outside origin for connections, images, scripts, styles, fonts or frames.
    assert content.meta == {"ui": {"csp": {}, "prefersBorder": True}}
    assert content.text == page().html


def test_the_page_is_one_small_self_contained_file() -> None:
    html = page().html
    assert len(html.encode()) < 40_000
    assert "/*STYLE*/" not in html and "/*SCRIPT*/" not in html
    assert html.count("<script>") == 1 and html.count("<style>") == 1
    # Nothing to fetch from anywhere: no links, external scripts, imports, fonts or remote URLs.
    for pattern in (r"<link\b", r"<script\s+src", r"@import", r"@font-face", r"https?://", r"src=\"//"):
        assert not re.search(pattern, html, re.IGNORECASE), pattern
    assert "url(" not in html  # in CSS: a background or font from somewhere
    # Its only request target is the server's own MCP endpoint (for the page at /gallery).
    assert re.findall(r"fetch\(([^,)]+)", html) == ["this.endpoint"]
    assert 'new URL("/mcp", window.location.href)' in html


async def test_a_client_without_apps_gets_the_same_result_blocks_as_before(settings: Settings) -> None:
    arguments = {"prompt": "a lighthouse", "width": 512, "height": 512, "seed": 3}
    async with Client(server_for(settings)) as plain:
        result = await plain.call_tool("generate_image", arguments)
    [image] = assert_image_result(result, count=1)
    output = GenerateImageOutput.model_validate(result.structured_content)
    text, preview, link = result.content
    assert text == TextContent(type="text", text=summary(output))
    assert isinstance(preview, ImageContent) and preview.mime_type == "image/webp"
    assert Image.open(io.BytesIO(base64.b64decode(preview.data))).size == (384, 384)
    assert link == ResourceLink(
        type="resource_link",
        uri=image["uri"],
        name=Path(image["path"]).name,
        title=f"{output.model} seed 3",
        mime_type="image/png",
        size=image["size_bytes"],
    )
    assert set(result.meta or {}) <= {"io.modelcontextprotocol/serverInfo"}  # the SDK's stamp, nothing of ours
    assert "ui://" not in json.dumps(result.model_dump(mode="json", by_alias=True))

    # A client that renders Apps gets the very same result (the view reads what it needs itself).
    async with Client(server_for(settings), extensions=[apps_client_extension()]) as apps:
        shown = await apps.call_tool("generate_image", arguments)
    assert normalised(shown) == normalised(result)


def normalised(result: CallToolResult) -> str:
    """The result's JSON with what differs between two runs of one request (ids, paths, times) blanked out."""
    text = json.dumps(result.model_dump(mode="json", by_alias=True), sort_keys=True)
    text = re.sub(r"\d{8}T\d{6}Z-[0-9a-f]{8}", "ID", text)
    text = re.sub(r'"elapsed_ms": \d+', '"elapsed_ms": 0', text)
    text = re.sub(r"in \d+\.\d s", "in T s", text)
    return re.sub(r'"(path|text)": "[^"]*"', lambda match: f'"{match[1]}": "{"P" if match[1] == "path" else ""}"', text)


async def test_thumbnails_are_small_webps_of_stored_images_only(settings: Settings) -> None:
    async with Client(server_for(settings)) as client:
        result = await client.call_tool("generate_image", {"prompt": "a fox", "width": 1024, "height": 768})
        [image] = assert_image_result(result, count=1)
        [thumbnail] = (await client.read_resource(f"{image['uri']}/thumbnail")).contents
        for bad in ("20261201T120000Z-0a1b2c3d", "..%2F..%2Fetc%2Fpasswd", "x"):
            with pytest.raises(MCPError):
                await client.read_resource(f"imagegen://images/{bad}/thumbnail")
    assert isinstance(thumbnail, BlobResourceContents) and thumbnail.mime_type == "image/webp"
    data = base64.b64decode(thumbnail.blob)
    assert Image.open(io.BytesIO(data)).size == (256, 192)
    assert len(data) * 20 < image["size_bytes"]


async def test_details_give_the_request_the_result_and_the_lineage(settings: Settings) -> None:
    async with Client(server_for(settings)) as client:
        made = await client.call_tool("generate_image", {"prompt": "a harbour", "width": 256, "height": 256})
        [parent] = assert_image_result(made, count=1)
        edited = await client.call_tool("edit_image", {"prompt": "at night", "image": parent["uri"], "seed": 5})
        [child] = assert_image_result(edited, count=1)
        again = await client.call_tool("edit_image", {"prompt": "in fog", "image": parent["uri"]})
        [second] = assert_image_result(again, count=1)
        await client.call_tool("delete_image", {"image_id": second["id"]})

        of_parent = await details(client, parent["uri"])
        of_child = await details(client, child["uri"])
        with pytest.raises(MCPError, match="No image"):
            await details(client, second["uri"])

    assert of_parent["image"]["prompt"] == "a harbour" and of_parent["provider"] == "studio"
    assert of_parent["request"] == {"prompt": "a harbour", "width": 256, "height": 256}
    assert of_parent["result"]["images"][0]["id"] == parent["id"]
    assert of_parent["parents"] == []
    # The deleted edit is no longer listed among the children.
    assert [(link["image_id"], link["role"]) for link in of_parent["children"]] == [(child["id"], "image")]
    assert of_child["request"] == {"prompt": "at night", "image": parent["uri"], "seed": 5}
    assert of_child["result"]["operation"] == "image_to_image"
    [link] = of_child["parents"]
    assert (link["image_id"], link["role"], link["image"]["prompt"]) == (parent["id"], "image", "a harbour")


async def details(client: Client, uri: str) -> dict[str, Any]:
    [content] = (await client.read_resource(f"{uri}/details")).contents
    assert isinstance(content, TextResourceContents) and content.mime_type == "application/json"
    value: dict[str, Any] = json.loads(content.text)
    return value


async def test_search_result_text_is_unchanged_for_every_client(settings: Settings) -> None:
    async with Client(server_for(settings)) as client:
        await client.call_tool("generate_image", {"prompt": "a lighthouse", "width": 256, "height": 256})
        found = await client.call_tool("search_images", {"query": "light"})
    assert [block.type for block in found.content] == ["text"]
    assert text_of(found).startswith("1 image(s), newest first:\nimagegen://images/")
