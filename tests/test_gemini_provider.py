"""The Gemini provider through the real google-genai client, talking to a loopback Gemini API."""

from __future__ import annotations

import io
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from PIL import Image

from imagegen_mcp.config import Settings
from imagegen_mcp.errors import (
    AuthenticationError,
    ContentBlockedError,
    ImageGenError,
    ProviderError,
    RateLimitedError,
)
from imagegen_mcp.providers.base import MAX_SEED, Progress, ProviderResult, registry
from imagegen_mcp.providers.gemini import (
    GEMINI_ASPECT_RATIOS,
    GEMINI_MODELS,
    GeminiProvider,
    image_size_for,
    nearest_aspect_ratio,
)
from imagegen_mcp.requests import ImageRequest, fit_request
from tests.e2e import REPO
from tests.fakes.gemini_server import (
    GEMINI_KEY as KEY,
)
from tests.fakes.gemini_server import (
    CandidateBlocked,
    ErrorReply,
    FakeGeminiServer,
    ImageReply,
    PromptBlocked,
    Reply,
    TextReply,
    api_key_invalid,
    permission_denied,
    quota_exhausted,
    unauthenticated,
    unavailable,
)

MODELS = registry(GEMINI_MODELS)

pytestmark = pytest.mark.anyio


@pytest.fixture
async def provider(api: FakeGeminiServer, make_settings: Callable[..., Settings]) -> AsyncIterator[GeminiProvider]:
    gemini = GeminiProvider(make_settings(GEMINI_API_KEY=KEY, GEMINI_BASE_URL=api.url))
    yield gemini
    await gemini.aclose()


async def run(
    provider: GeminiProvider,
    model: str = "gemini_flash_image",
    *,
    seed: int = 7,
    progress: Progress | None = None,
    **arguments: Any,
) -> ProviderResult:
    """Generate with ``model``, the request resolved by the core exactly as the service would pass it."""
    config = MODELS[model]
    request = ImageRequest(prompt=arguments.pop("prompt", "a lighthouse at dusk"), **arguments)
    resolved, _ = fit_request(request, config, f"gemini:{model}", primary=True, seed=seed)
    return await provider.generate(resolved, config, progress or Progress())


def size_of(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        return image.size


# -- mapping sizes to what Gemini takes -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("width", "height", "expected"),
    [
        (1024, 1024, "1:1"),
        (1920, 1080, "16:9"),
        (1080, 1920, "9:16"),
        (1000, 500, "16:9"),  # 2.0 is nearer 16:9 (1.78) than 21:9 (2.33) on a log scale
        (500, 1000, "9:16"),
        (2520, 1080, "21:9"),
        (1100, 1000, "1:1"),
        (1200, 1000, "5:4"),
        (800, 1000, "4:5"),
        (1500, 1000, "3:2"),
        (768, 1024, "3:4"),
        (4000, 1000, "21:9"),
    ],
)
def test_nearest_aspect_ratio(width: int, height: int, expected: str) -> None:
    assert nearest_aspect_ratio(width / height, GEMINI_ASPECT_RATIOS) == expected


def test_nearest_aspect_ratio_respects_the_model_list() -> None:
    assert nearest_aspect_ratio(21 / 9, ("1:1", "16:9", "9:16")) == "16:9"


@pytest.mark.parametrize(
    ("longest", "sizes", "expected"),
    [
        (1024, ("1K", "2K", "4K"), "1K"),
        (1376, ("1K", "2K", "4K"), "2K"),
        (2048, ("4K", "2K", "1K"), "2K"),
        (4096, ("1K", "2K", "4K"), "4K"),
        (6000, ("1K", "2K"), "2K"),
        (4096, (), None),
    ],
)
def test_image_size_tier(longest: int, sizes: tuple[str, ...], expected: str | None) -> None:
    assert image_size_for(longest, sizes) == expected


def test_importing_the_provider_does_not_import_the_sdk() -> None:
    code = (
        "import sys\n"
        "from imagegen_mcp.config import Settings\n"
        "from imagegen_mcp.providers.gemini import GeminiProvider\n"
        "p = GeminiProvider(Settings.load({'GEMINI_API_KEY': 'k'}))\n"
        "assert p.check().met, p.check().reason\n"
        "assert 'google.genai' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=60)


# -- generation -------------------------------------------------------------------------------------------


async def test_generates_an_image_with_the_mapped_ratio(provider: GeminiProvider, api: FakeGeminiServer) -> None:
    result = await run(provider, aspect_ratio="16:9", seed=42)

    [image] = result.images
    assert image.mime_type == "image/png"
    assert image.data.startswith(b"\x89PNG")
    assert size_of(image.data) == (1344, 768)
    assert image.seed == 42
    assert result.details == {"aspect_ratio": "16:9", "api_model": "gemini-2.5-flash-image"}
    assert result.adjustments == []  # the ratio asked for is one Gemini supports
    assert result.cost is None

    [sent] = api.requests
    assert sent.model == "gemini-2.5-flash-image"
    assert sent.api_key == KEY
    assert sent.prompt == "a lighthouse at dusk"
    assert sent.generation_config["responseModalities"] == ["TEXT", "IMAGE"]
    assert sent.generation_config["seed"] == 42
    assert sent.image_config == {"aspectRatio": "16:9"}  # the Flash model takes no imageSize


async def test_pixel_sizes_are_mapped_and_the_mapping_reported(provider: GeminiProvider, api: FakeGeminiServer) -> None:
    result = await run(provider, width=1000, height=500)

    assert api.requests[0].image_config == {"aspectRatio": "16:9"}
    assert result.details["aspect_ratio"] == "16:9"
    [note] = result.adjustments
    assert "1000x500" in note and "16:9" in note and "1344x768" in note


async def test_an_unsupported_ratio_maps_to_the_nearest(provider: GeminiProvider, api: FakeGeminiServer) -> None:
    result = await run(provider, aspect_ratio="2:1")

    assert api.requests[0].image_config == {"aspectRatio": "16:9"}
    [note] = result.adjustments
    assert "aspect_ratio 2:1 mapped to 16:9" in note


async def test_the_default_size_needs_no_adjustment(provider: GeminiProvider, api: FakeGeminiServer) -> None:
    result = await run(provider)

    assert api.requests[0].image_config == {"aspectRatio": "1:1"}
    assert size_of(result.images[0].data) == (1024, 1024)
    assert result.adjustments == []


async def test_the_pro_model_gets_a_resolution_tier(provider: GeminiProvider, api: FakeGeminiServer) -> None:
    result = await run(provider, "gemini_pro_image", width=2048, height=1152)

    [sent] = api.requests
    assert sent.model == "gemini-3-pro-image-preview"
    assert sent.image_config == {"aspectRatio": "16:9", "imageSize": "2K"}
    assert result.details == {"aspect_ratio": "16:9", "image_size": "2K", "api_model": "gemini-3-pro-image-preview"}
    assert size_of(result.images[0].data) == (2688, 1536)
    assert "16:9 at 2K" in result.adjustments[0]


async def test_count_runs_concurrent_requests_with_consecutive_seeds(
    provider: GeminiProvider, api: FakeGeminiServer
) -> None:
    api.on(ImageReply(delay_s=0.3))
    updates: list[tuple[float, str | None]] = []

    async def sink(value: float, total: float | None, message: str | None) -> None:
        updates.append((value, message))

    result = await run(provider, count=3, seed=MAX_SEED - 1, progress=Progress(sink))

    assert len(result.images) == 3
    assert [image.seed for image in result.images] == [MAX_SEED - 1, MAX_SEED, 0]
    assert sorted(r.generation_config["seed"] for r in api.requests) == [0, MAX_SEED - 1, MAX_SEED]
    assert api.max_in_flight == 3
    assert [value for value, _ in updates] == sorted(value for value, _ in updates)
    assert updates[-1][1] == "received image 3 of 3"


async def test_thought_images_are_skipped(provider: GeminiProvider, api: FakeGeminiServer) -> None:
    api.on(ImageReply(with_thought_image=True))
    result = await run(provider, aspect_ratio="16:9")
    assert size_of(result.images[0].data) == (1344, 768)


async def test_the_client_is_created_once_and_closed(provider: GeminiProvider, api: FakeGeminiServer) -> None:
    await run(provider)
    client = provider._client
    assert client is not None
    await run(provider)
    assert provider._client is client
    await provider.aclose()
    assert provider._client is None
    await run(provider)  # a closed provider reconnects on demand
    assert len(api.requests) == 3


async def test_google_api_key_is_accepted_too(api: FakeGeminiServer, make_settings: Callable[..., Settings]) -> None:
    gemini = GeminiProvider(make_settings(GOOGLE_API_KEY=KEY, GEMINI_BASE_URL=api.url))
    try:
        await run(gemini)
    finally:
        await gemini.aclose()
    assert api.requests[0].api_key == KEY


# -- errors -----------------------------------------------------------------------------------------------


ERROR_CASES: list[tuple[str, Reply, type[ImageGenError], bool]] = [
    ("400 API_KEY_INVALID", api_key_invalid(), AuthenticationError, True),
    ("401", unauthenticated(), AuthenticationError, True),
    ("403", permission_denied(), AuthenticationError, True),
    ("429", quota_exhausted(), RateLimitedError, True),
    ("503", unavailable(), ProviderError, True),
    ("500", ErrorReply(500, "INTERNAL", "An internal error has occurred."), ProviderError, True),
    ("404", ErrorReply(404, "NOT_FOUND", "models/x is not found for API version v1beta"), ProviderError, False),
    ("400 other", ErrorReply(400, "FAILED_PRECONDITION", "User location is not supported"), ProviderError, False),
    ("prompt blocked", PromptBlocked("PROHIBITED_CONTENT"), ContentBlockedError, False),
    ("prompt blocked safety", PromptBlocked("SAFETY"), ContentBlockedError, False),
    ("image safety", CandidateBlocked("IMAGE_SAFETY"), ContentBlockedError, False),
    ("safety", CandidateBlocked("SAFETY", finish_message=None), ContentBlockedError, False),
    ("prohibited", CandidateBlocked("PROHIBITED_CONTENT"), ContentBlockedError, False),
    ("image prohibited", CandidateBlocked("IMAGE_PROHIBITED_CONTENT"), ContentBlockedError, False),
    ("no image", TextReply("I can only describe a lighthouse.", finish_reason="NO_IMAGE"), ProviderError, False),
    ("text only", TextReply("Here is a poem about a lighthouse."), ProviderError, False),
    ("undecodable image", ImageReply(data=b"not an image"), ProviderError, False),
]


@pytest.mark.parametrize(
    ("case", "reply", "error_type", "falls_back"), ERROR_CASES, ids=[case[0] for case in ERROR_CASES]
)
async def test_api_answers_map_to_structured_errors(
    provider: GeminiProvider,
    api: FakeGeminiServer,
    case: str,
    reply: Reply,
    error_type: type[ImageGenError],
    falls_back: bool,
) -> None:
    api.on(reply)
    with pytest.raises(ImageGenError) as caught:
        await run(provider)

    error = caught.value
    assert type(error) is error_type
    assert error.allows_fallback is falls_back
    assert error.remediation
    assert KEY not in error.to_payload().model_dump_json()
    # Exactly one call: the SDK's own retries are off, so a 429 or 503 is not silently repeated.
    assert len(api.requests) == 1


async def test_an_invalid_key_names_its_variable(api: FakeGeminiServer, make_settings: Callable[..., Settings]) -> None:
    wrong = "wrong-key-456"
    gemini = GeminiProvider(make_settings(GOOGLE_API_KEY=wrong, GEMINI_BASE_URL=api.url))
    try:
        with pytest.raises(AuthenticationError) as caught:
            await run(gemini)
    finally:
        await gemini.aclose()
    assert api.requests[0].api_key == wrong  # the real service answered 400 API_KEY_INVALID to it
    assert "GOOGLE_API_KEY" in caught.value.message
    assert any("GOOGLE_API_KEY" in step for step in caught.value.remediation)
    assert wrong not in caught.value.to_payload().model_dump_json()


async def test_quota_errors_give_the_delay_and_explain_billing(provider: GeminiProvider, api: FakeGeminiServer) -> None:
    api.on(quota_exhausted(retry_delay="17.5s"))
    with pytest.raises(RateLimitedError) as caught:
        await run(provider)

    error = caught.value
    assert error.retry_after_s == 17.5
    assert error.retryable
    assert "Wait 17.5 s" in error.remediation[0]
    assert any("free tier" in step and "billing" in step for step in error.remediation)
    assert "limit: 0" in error.message


async def test_server_errors_are_retryable(provider: GeminiProvider, api: FakeGeminiServer) -> None:
    api.on(unavailable())
    with pytest.raises(ProviderError) as caught:
        await run(provider)
    assert caught.value.retryable
    assert "overloaded" in caught.value.message


async def test_the_model_text_is_carried_when_no_image_comes_back(
    provider: GeminiProvider, api: FakeGeminiServer
) -> None:
    api.on(TextReply("I cannot draw that, but I can describe it.", finish_reason="NO_IMAGE"))
    with pytest.raises(ProviderError) as caught:
        await run(provider)
    error = caught.value
    assert not error.retryable
    assert "NO_IMAGE" in error.message
    assert "I cannot draw that, but I can describe it." in error.message
    assert error.details == {"finish_reason": "NO_IMAGE", "model_text": "I cannot draw that, but I can describe it."}


async def test_blocks_say_why(provider: GeminiProvider, api: FakeGeminiServer) -> None:
    api.on(PromptBlocked("PROHIBITED_CONTENT"), prompt_contains="forbidden")
    api.on(CandidateBlocked("IMAGE_SAFETY"), prompt_contains="unsafe")

    with pytest.raises(ContentBlockedError) as prompt_block:
        await run(provider, prompt="something forbidden")
    with pytest.raises(ContentBlockedError) as image_block:
        await run(provider, prompt="something unsafe")

    assert "PROHIBITED_CONTENT" in prompt_block.value.message
    assert prompt_block.value.details == {"block_reason": "PROHIBITED_CONTENT"}
    assert "IMAGE_SAFETY" in image_block.value.message
    assert image_block.value.details == {"finish_reason": "IMAGE_SAFETY"}


async def test_one_failed_image_fails_the_whole_request(provider: GeminiProvider, api: FakeGeminiServer) -> None:
    api.on(CandidateBlocked("IMAGE_SAFETY"))
    with pytest.raises(ContentBlockedError):
        await run(provider, count=3)


async def test_an_unreachable_api_is_a_retryable_error(make_settings: Callable[..., Settings]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    gemini = GeminiProvider(make_settings(GEMINI_API_KEY=KEY, GEMINI_BASE_URL=f"http://127.0.0.1:{port}"))
    try:
        with pytest.raises(ProviderError) as caught:
            await run(gemini)
    finally:
        await gemini.aclose()
    assert caught.value.retryable
    assert caught.value.allows_fallback
    assert f"127.0.0.1:{port}" in caught.value.message


async def test_each_model_is_its_own_endpoint(provider: GeminiProvider, api: FakeGeminiServer) -> None:
    api.on(unavailable(), model="gemini-3-pro-image-preview")
    with pytest.raises(ProviderError):
        await run(provider, "gemini_pro_image")
    await run(provider, "gemini_flash_image")
    assert [request.model for request in api.requests] == ["gemini-3-pro-image-preview", "gemini-2.5-flash-image"]
