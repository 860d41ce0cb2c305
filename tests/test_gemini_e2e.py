"""Gemini end to end: a real MCP client, the server, the real google-genai client and a loopback Gemini API."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from mcp.client import Client
from mcp_types import BlobResourceContents, CallToolResult
from PIL import Image

from imagegen_mcp.catalog import ProviderSpec
from imagegen_mcp.config import Settings
from imagegen_mcp.providers.gemini import GeminiProvider
from imagegen_mcp.server.app import build_server
from imagegen_mcp.storage import read_png_text
from imagegen_mcp.testing import FunctionProvider, photo_like_png
from tests.e2e import assert_image_result, error_of, text_of
from tests.fakes.gemini_server import (
    GEMINI_KEY as KEY,
)
from tests.fakes.gemini_server import (
    CandidateBlocked,
    FakeGeminiServer,
    PromptBlocked,
    Reply,
    TextReply,
    api_key_invalid,
    permission_denied,
    quota_exhausted,
    unauthenticated,
    unavailable,
)
from tests.fakes.palette import PaletteProvider
from tests.images import data_uri, solid_png

pytestmark = pytest.mark.anyio

DEFAULT = "gemini:gemini_nano_banana_2_1"
FLASH = "gemini:gemini_3_1_flash_image"


@pytest.fixture
def gemini_settings(api: FakeGeminiServer, make_settings: Callable[..., Settings]) -> Callable[..., Settings]:
    """Settings that point Gemini at the loopback API and make it the default provider."""

    def make(**environ: str) -> Settings:
        return make_settings(GEMINI_API_KEY=KEY, GEMINI_BASE_URL=api.url, IMAGEGEN_DEFAULT_PROVIDER="gemini", **environ)

    return make


async def call(
    settings: Settings, arguments: dict[str, Any], providers: list[ProviderSpec] | None = None
) -> CallToolResult:
    async with Client(build_server(settings, providers or [GeminiProvider])) as client:
        return await client.call_tool("generate_image", arguments)


def structured(result: CallToolResult) -> dict[str, Any]:
    content: dict[str, Any] | None = result.structured_content
    assert content is not None, text_of(result)
    return content


async def test_generation_returns_image_preview_link_and_provenance(
    api: FakeGeminiServer, gemini_settings: Callable[..., Settings]
) -> None:
    async with Client(build_server(gemini_settings(), [GeminiProvider])) as client:
        result = await client.call_tool(
            "generate_image", {"prompt": "a red fox in snow", "model": DEFAULT, "aspect_ratio": "16:9", "seed": 5}
        )
        [image] = assert_image_result(result, count=1)
        contents = (await client.read_resource(image["uri"])).contents

    output = structured(result)
    assert output["provider"] == "gemini" and output["model"] == DEFAULT
    assert output["fell_back"] is False
    assert output["details"]["aspect_ratio"] == "16:9" and output["details"]["image_size"] == "1K"
    assert output["cost_usd"] is None  # Google publishes no price per image for Nano Banana 2.1
    assert (image["width"], image["height"], image["seed"]) == (1376, 768, 5)
    assert image["mime_type"] == "image/png"

    # The request the Gemini API received carries the mapped ratio and the seed.
    [sent] = api.requests
    assert sent.model == "gemini-nano-banana-2.1"
    assert sent.image_config == {"aspectRatio": "16:9", "imageSize": "1K"}
    assert sent.generation_config["seed"] == 5
    assert sent.prompt == "a red fox in snow"

    # The resource link resolves to the full image, which carries its provenance.
    [blob] = contents
    assert isinstance(blob, BlobResourceContents)
    full = base64.b64decode(blob.blob)
    assert full == Path(image["path"]).read_bytes()
    assert Image.open(io.BytesIO(full)).size == (1376, 768)
    provenance = json.loads(read_png_text(full) or "{}")
    assert provenance["model"] == DEFAULT and provenance["prompt"] == "a red fox in snow"


async def test_pixel_sizes_are_mapped_to_a_ratio_and_reported(
    api: FakeGeminiServer, gemini_settings: Callable[..., Settings]
) -> None:
    result = await call(gemini_settings(), {"prompt": "a banner", "width": 1200, "height": 400})

    [image] = assert_image_result(result, count=1)
    assert api.requests[0].image_config == {"aspectRatio": "21:9", "imageSize": "1K"}
    assert (image["width"], image["height"]) == (1584, 672)
    output = structured(result)
    assert output["details"]["aspect_ratio"] == "21:9"
    assert any("1200x400" in note and "21:9" in note for note in output["adjustments"])


async def test_count_three_returns_three_images(
    api: FakeGeminiServer, gemini_settings: Callable[..., Settings]
) -> None:
    result = await call(gemini_settings(), {"prompt": "three apples", "count": 3, "seed": 100})

    images = assert_image_result(result, count=3)
    assert [image["seed"] for image in images] == [100, 101, 102]
    assert len({image["path"] for image in images}) == 3
    assert sorted(request.generation_config["seed"] for request in api.requests) == [100, 101, 102]


async def test_the_cost_follows_the_tier(api: FakeGeminiServer, gemini_settings: Callable[..., Settings]) -> None:
    small = structured(
        await call(gemini_settings(), {"prompt": "icons", "model": FLASH, "width": 512, "height": 512, "count": 2})
    )
    large = structured(await call(gemini_settings(), {"prompt": "a poster", "model": FLASH, "aspect_ratio": "16:9"}))

    assert (small["details"]["image_size"], small["cost_usd"]) == ("512", pytest.approx(0.09))
    assert (large["details"]["image_size"], large["cost_usd"]) == ("1K", pytest.approx(0.067))
    assert [request.image_config.get("imageSize") for request in api.requests] == ["512", "512", "1K"]


ERROR_CASES: list[tuple[str, Reply, str, bool]] = [
    ("invalid key", api_key_invalid(), "authentication_failed", False),
    ("unauthenticated", unauthenticated(), "authentication_failed", False),
    ("permission denied", permission_denied(), "authentication_failed", False),
    ("quota", quota_exhausted(), "rate_limited", True),
    ("overloaded", unavailable(), "provider_error", True),
    ("prompt blocked", PromptBlocked("PROHIBITED_CONTENT"), "content_blocked", False),
    ("image blocked", CandidateBlocked("IMAGE_SAFETY"), "content_blocked", False),
    ("no image", TextReply("I can describe it instead.", finish_reason="NO_IMAGE"), "provider_error", False),
]


@pytest.mark.parametrize(("case", "reply", "code", "retryable"), ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
async def test_each_failure_gives_its_code(
    api: FakeGeminiServer,
    gemini_settings: Callable[..., Settings],
    case: str,
    reply: Reply,
    code: str,
    retryable: bool,
) -> None:
    api.on(reply)
    result = await call(gemini_settings(), {"prompt": "a lighthouse"})

    assert result.is_error
    error = error_of(result)
    assert error["code"] == code
    assert error["provider"] == "gemini" and error["model"] == DEFAULT
    assert error["retryable"] is retryable
    assert error["remediation"]
    assert [(a["provider"], a["outcome"], a["code"]) for a in error["attempts"]] == [("gemini", "failed", code)]
    assert KEY not in json.dumps(error) and KEY not in text_of(result)


async def test_rate_limit_gives_the_delay_and_the_billing_remedy(
    api: FakeGeminiServer, gemini_settings: Callable[..., Settings]
) -> None:
    api.on(quota_exhausted(retry_delay="23s"))
    error = error_of(await call(gemini_settings(), {"prompt": "a lighthouse"}))

    assert error["retry_after_s"] == 23
    assert any("billing" in step and "free" in step for step in error["remediation"])


async def test_the_models_text_comes_back_when_no_image_does(
    api: FakeGeminiServer, gemini_settings: Callable[..., Settings]
) -> None:
    api.on(TextReply("I would rather describe a lighthouse.", finish_reason="NO_IMAGE"))
    result = await call(gemini_settings(), {"prompt": "a lighthouse"})

    error = error_of(result)
    assert "I would rather describe a lighthouse." in error["message"]
    assert "I would rather describe a lighthouse." in text_of(result)


async def test_a_blocked_prompt_never_falls_back_even_in_auto_mode(
    api: FakeGeminiServer, gemini_settings: Callable[..., Settings]
) -> None:
    api.on(PromptBlocked("PROHIBITED_CONTENT"))
    result = await call(
        gemini_settings(IMAGEGEN_FALLBACK="auto"), {"prompt": "a lighthouse"}, [GeminiProvider, PaletteProvider]
    )

    assert result.is_error
    error = error_of(result)
    assert error["code"] == "content_blocked"
    assert [(a["provider"], a["outcome"]) for a in error["attempts"]] == [("gemini", "failed")]


async def test_a_503_falls_back_in_auto_mode_and_the_trace_shows_it(
    api: FakeGeminiServer, gemini_settings: Callable[..., Settings]
) -> None:
    api.on(unavailable())
    result = await call(
        gemini_settings(IMAGEGEN_FALLBACK="auto"), {"prompt": "a lighthouse"}, [GeminiProvider, PaletteProvider]
    )

    assert_image_result(result, count=1)
    output = structured(result)
    assert output["fell_back"] is True
    assert output["model"] == "palette:solid_red"
    assert [(a["provider"], a["outcome"], a["code"]) for a in output["attempts"]] == [
        ("gemini", "failed", "provider_error"),
        ("palette", "succeeded", None),
    ]
    assert "overloaded" in output["attempts"][0]["reason"]
    assert len(api.requests) == 1


async def test_a_503_does_not_fall_back_in_strict_mode(
    api: FakeGeminiServer, gemini_settings: Callable[..., Settings]
) -> None:
    api.on(unavailable())
    result = await call(
        gemini_settings(IMAGEGEN_FALLBACK="strict"), {"prompt": "a lighthouse"}, [GeminiProvider, PaletteProvider]
    )

    error = error_of(result)
    assert result.is_error and error["code"] == "provider_error" and error["retryable"] is True
    assert [a["provider"] for a in error["attempts"]] == ["gemini"]


# -- models Google no longer serves -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "replacement", "shut_down"),
    [
        ("gemini:gemini_flash_image", "gemini:gemini_nano_banana_2_1", "2 October 2026"),
        ("gemini-2.5-flash-image", "gemini:gemini_nano_banana_2_1", "2 October 2026"),
        ("gemini_pro_image", "gemini:gemini_3_pro_image", "25 June 2026"),
        ("gemini:gemini-3-pro-image-preview", "gemini:gemini_3_pro_image", "25 June 2026"),
    ],
)
async def test_a_shut_down_model_names_its_replacement(
    api: FakeGeminiServer, gemini_settings: Callable[..., Settings], name: str, replacement: str, shut_down: str
) -> None:
    backup = FunctionProvider(name="backup")
    arguments = {"prompt": "a lighthouse", "model": name}
    result = await call(gemini_settings(IMAGEGEN_FALLBACK="auto"), arguments, [GeminiProvider, backup])

    error = error_of(result)
    assert error["code"] == "model_not_found"
    assert shut_down in error["message"] and f"Its replacement is {replacement}." in error["message"]
    assert error["remediation"][0] == f"Use model '{replacement}'"
    assert error["details"] == {"replacement": replacement}
    # A requested model is never swapped silently, not even in auto mode.
    assert api.requests == [] and backup.calls == []


async def test_an_id_the_api_rejects_names_the_override(
    api: FakeGeminiServer, gemini_settings: Callable[..., Settings]
) -> None:
    settings = gemini_settings(
        IMAGEGEN_FALLBACK="strict", IMAGEGEN_MODEL_IDS="gemini:gemini_nano_banana_2_1=gemini-2.2"
    )
    error = error_of(await call(settings, {"prompt": "a lighthouse"}))

    assert [request.model for request in api.requests] == ["gemini-2.2"]
    assert error["code"] == "model_retired" and error["model"] == DEFAULT
    assert "'gemini-2.2'" in error["message"] and "likely retired" in error["message"]
    assert 'IMAGEGEN_MODEL_IDS="gemini:gemini_nano_banana_2_1=<current id>"' in error["remediation"][0]
    assert error["details"]["vendor_id"] == "gemini-2.2"
    assert [(a["provider"], a["outcome"], a["code"]) for a in error["attempts"]] == [
        ("gemini", "failed", "model_retired")
    ]


async def test_a_retired_id_falls_back_in_auto_mode_and_the_trace_says_why(
    api: FakeGeminiServer, gemini_settings: Callable[..., Settings]
) -> None:
    backup = FunctionProvider(name="backup")
    settings = gemini_settings(IMAGEGEN_FALLBACK="auto", IMAGEGEN_MODEL_IDS="gemini:gemini_nano_banana_2_1=gemini-2.2")
    result = await call(settings, {"prompt": "a lighthouse", "seed": 3}, [GeminiProvider, backup])

    assert_image_result(result, count=1)
    output = structured(result)
    assert output["fell_back"] is True
    assert output["model"] == "backup:backup_model"
    assert [(a["provider"], a["outcome"], a["code"]) for a in output["attempts"]] == [
        ("gemini", "failed", "model_retired"),
        ("backup", "succeeded", None),
    ]
    assert "'gemini-2.2'" in output["attempts"][0]["reason"]
    assert [request.seed for request in backup.calls] == [3]
    assert len(api.requests) == 1


async def test_an_edit_sends_the_image_then_the_references_and_the_instruction(
    api: FakeGeminiServer, gemini_settings: Callable[..., Settings]
) -> None:
    source, first, second = (photo_like_png(96, 64, seed) for seed in (1, 2, 3))
    arguments = {
        "prompt": "put the hat from the second image on the fox",
        "image": data_uri(source),
        "reference_images": [data_uri(first), data_uri(second)],
        "strength": 0.4,
    }
    async with Client(build_server(gemini_settings(), [GeminiProvider])) as client:
        result = await client.call_tool("edit_image", arguments)
        masked = await client.call_tool("edit_image", {**arguments, "mask": data_uri(solid_png(96, 64, 255, "L"))})

    output = structured(result)
    assert output["model"] == DEFAULT and output["operation"] == "instruction_edit", text_of(result)
    (request,) = api.requests
    assert request.prompt == arguments["prompt"]
    assert request.images == [("image/png", source), ("image/png", first), ("image/png", second)]
    assert request.image_config["aspectRatio"] == "3:2"  # the input's shape, since no size was asked for
    assert any("strength ignored" in note for note in output["adjustments"])
    # Gemini takes no mask: the only provider here cannot inpaint, and the error says which models can.
    refusal = error_of(masked)
    assert refusal["code"] == "invalid_request" and "inpaint with a mask" in refusal["message"]
    assert refusal["remediation"][0].startswith("Drop the mask") and len(api.requests) == 1


async def test_more_references_than_the_model_takes_are_refused_before_any_call(
    api: FakeGeminiServer, gemini_settings: Callable[..., Settings]
) -> None:
    image = data_uri(photo_like_png(32, 32, 5))
    arguments = {"prompt": "combine", "image": image, "reference_images": [image] * 14, "model": DEFAULT}
    error = error_of(await call_edit(gemini_settings(), arguments))
    assert "takes at most 13 reference images" in error["message"]
    assert api.requests == []


async def call_edit(settings: Settings, arguments: dict[str, Any]) -> CallToolResult:
    async with Client(build_server(settings, [GeminiProvider])) as client:
        return await client.call_tool("edit_image", arguments)
