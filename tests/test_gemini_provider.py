"""The Gemini provider through the real google-genai client, talking to a loopback Gemini API."""

from __future__ import annotations

import io
import re
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from PIL import Image
from pydantic import ValidationError

from imagegen_mcp.config import Settings
from imagegen_mcp.errors import (
    AuthenticationError,
    ContentBlockedError,
    ImageGenError,
    ModelRetiredError,
    ProviderError,
    RateLimitedError,
)
from imagegen_mcp.providers.base import MAX_SEED, Progress, ProviderResult, registry
from imagegen_mcp.providers.gemini import (
    GEMINI_ASPECT_RATIOS,
    GEMINI_MODELS,
    RETIRED_MODELS,
    STANDARD_ASPECT_RATIOS,
    GeminiModelConfig,
    GeminiProvider,
    image_size_for,
    nearest_aspect_ratio,
    output_size,
)
from imagegen_mcp.requests import ImageRequest, fit_request
from tests.e2e import REPO
from tests.fakes.gemini_server import (
    GEMINI_KEY as KEY,
)
from tests.fakes.gemini_server import (
    SERVED_MODELS,
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
DEFAULT = GeminiProvider.info.default_model
ALL_RATIOS = GEMINI_ASPECT_RATIOS

pytestmark = pytest.mark.anyio


@pytest.fixture
async def provider(api: FakeGeminiServer, make_settings: Callable[..., Settings]) -> AsyncIterator[GeminiProvider]:
    gemini = GeminiProvider(make_settings(GEMINI_API_KEY=KEY, GEMINI_BASE_URL=api.url))
    yield gemini
    await gemini.aclose()


async def run(
    provider: GeminiProvider,
    model: str | GeminiModelConfig = DEFAULT,
    *,
    seed: int = 7,
    progress: Progress | None = None,
    **arguments: Any,
) -> ProviderResult:
    """Generate with ``model`` (a key of the provider's registry, or a config), the request resolved by the core
    exactly as the service would pass it."""
    config = provider.models[model] if isinstance(model, str) else model
    request = ImageRequest(prompt=arguments.pop("prompt", "a lighthouse at dusk"), **arguments)
    resolved, _ = fit_request(request, config, f"gemini:{config.key}", primary=True, seed=seed)
    return await provider.generate(resolved, config, progress or Progress())


def size_of(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        return image.size


# -- the catalog ------------------------------------------------------------------------------------------


def test_the_default_is_the_model_google_recommends_now() -> None:
    assert DEFAULT == "gemini_nano_banana_2_1"
    assert MODELS[DEFAULT].api_model == "gemini-nano-banana-2.1"


@pytest.mark.parametrize("model", GEMINI_MODELS, ids=lambda model: model.key)
def test_every_model_asks_only_for_what_the_api_serves(model: GeminiModelConfig) -> None:
    """The catalog and the loopback API are written independently; they must agree on every id, tier and ratio."""
    served = SERVED_MODELS[model.api_model]
    assert set(model.image_sizes) == served.image_sizes
    assert set(model.aspect_ratios) == served.aspect_ratios
    assert 1 + model.inputs.max_reference_images == served.max_input_images
    assert model.inputs.instruction_edit and not model.inputs.inpaint


def test_no_shut_down_vendor_id_is_in_the_catalog() -> None:
    vendor_ids = {model.api_model for model in GEMINI_MODELS}
    assert not vendor_ids & set(RETIRED_MODELS)
    assert not vendor_ids & {"gemini-2.5-flash-image", "gemini-3-pro-image-preview", "gemini-3.1-flash-image-preview"}


def test_retired_names_point_at_models_of_the_catalog() -> None:
    assert {"gemini_flash_image", "gemini_pro_image", "gemini-2.5-flash-image", "gemini-3-pro-image-preview"} <= set(
        RETIRED_MODELS
    )
    for name, retired in RETIRED_MODELS.items():
        assert retired.replacement in MODELS, name
        assert re.search(r"\d{1,2} (June|October) 2026", retired.note), name
    assert RETIRED_MODELS["gemini_pro_image"].replacement == "gemini_3_pro_image"
    assert RETIRED_MODELS["gemini-2.5-flash-image"].replacement == DEFAULT


def test_a_price_needs_a_tier_the_model_takes() -> None:
    with pytest.raises(ValidationError, match="prices for tiers"):
        GeminiModelConfig(
            key="x",
            display_name="X",
            api_model="m",
            max_resolution=2048,
            image_sizes=("1K",),
            price_per_image={"2K": 0.1},
        )
    with pytest.raises(ValidationError, match="unsupported"):
        GeminiModelConfig(key="x", display_name="X", api_model="m", max_resolution=2048, image_sizes=("1k",))


# -- mapping sizes to what Gemini takes -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("width", "height", "ratios", "expected"),
    [
        (1024, 1024, ALL_RATIOS, "1:1"),
        (1920, 1080, ALL_RATIOS, "16:9"),
        (1080, 1920, ALL_RATIOS, "9:16"),
        (1000, 500, ALL_RATIOS, "16:9"),  # 2.0 is nearer 16:9 (1.78) than 21:9 (2.33) on a log scale
        (500, 1000, ALL_RATIOS, "9:16"),
        (2520, 1080, ALL_RATIOS, "21:9"),
        (3000, 1000, ALL_RATIOS, "21:9"),  # 3.0 is nearer 21:9 than 4:1
        (4000, 1000, ALL_RATIOS, "4:1"),
        (4000, 1000, STANDARD_ASPECT_RATIOS, "21:9"),
        (1000, 8000, ALL_RATIOS, "1:8"),
        (1000, 8000, STANDARD_ASPECT_RATIOS, "9:16"),
        (1100, 1000, ALL_RATIOS, "1:1"),
        (1200, 1000, ALL_RATIOS, "5:4"),
        (800, 1000, ALL_RATIOS, "4:5"),
        (1500, 1000, ALL_RATIOS, "3:2"),
        (768, 1024, ALL_RATIOS, "3:4"),
    ],
)
def test_nearest_aspect_ratio(width: int, height: int, ratios: tuple[str, ...], expected: str) -> None:
    assert nearest_aspect_ratio(width / height, ratios) == expected


def test_nearest_aspect_ratio_respects_the_model_list() -> None:
    assert nearest_aspect_ratio(21 / 9, ("1:1", "16:9", "9:16")) == "16:9"


@pytest.mark.parametrize(
    ("ratio", "tier", "expected"),
    [
        ("1:1", "1K", (1024, 1024)),
        ("16:9", "1K", (1376, 768)),
        ("16:9", "512", (688, 384)),
        ("16:9", "2K", (2752, 1536)),
        ("21:9", None, (1584, 672)),
        ("1:8", "4K", (1536, 12288)),
        ("4:1", "512", (1024, 256)),
    ],
)
def test_output_sizes_follow_googles_tables(ratio: str, tier: str | None, expected: tuple[int, int]) -> None:
    assert output_size(ratio, tier) == expected


FLASH_TIERS = ("512", "1K", "2K", "4K")
PRO_TIERS = ("1K", "2K", "4K")


@pytest.mark.parametrize(
    ("width", "height", "ratio", "sizes", "expected"),
    [
        (512, 512, "1:1", FLASH_TIERS, "512"),
        (688, 384, "16:9", FLASH_TIERS, "512"),
        (513, 512, "1:1", FLASH_TIERS, "1K"),
        (512, 512, "1:1", PRO_TIERS, "1K"),
        (1024, 1024, "1:1", PRO_TIERS, "1K"),
        (1376, 768, "16:9", PRO_TIERS, "1K"),  # 1K at 16:9 is wider than 1024
        (1377, 768, "16:9", PRO_TIERS, "2K"),
        (2048, 1152, "16:9", ("4K", "2K", "1K"), "2K"),
        (4096, 4096, "1:1", PRO_TIERS, "4K"),
        (4096, 4096, "1:1", ("1K", "2K"), "2K"),  # the largest when none covers the request
        (4096, 4096, "1:1", (), None),
    ],
)
def test_image_size_tier(width: int, height: int, ratio: str, sizes: tuple[str, ...], expected: str | None) -> None:
    assert image_size_for(width, height, ratio, sizes) == expected


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
    assert size_of(image.data) == (1376, 768)
    assert image.seed == 42
    assert result.details == {"aspect_ratio": "16:9", "image_size": "1K", "api_model": "gemini-nano-banana-2.1"}
    assert result.adjustments == []  # the ratio asked for is one Gemini supports
    assert result.cost is None  # Google publishes no price per image for this model

    [sent] = api.requests
    assert sent.model == "gemini-nano-banana-2.1"
    assert sent.api_key == KEY
    assert sent.prompt == "a lighthouse at dusk"
    assert sent.generation_config["responseModalities"] == ["TEXT", "IMAGE"]
    assert sent.generation_config["seed"] == 42
    assert sent.image_config == {"aspectRatio": "16:9", "imageSize": "1K"}


async def test_pixel_sizes_are_mapped_and_the_mapping_reported(provider: GeminiProvider, api: FakeGeminiServer) -> None:
    result = await run(provider, width=1000, height=500)

    assert api.requests[0].image_config == {"aspectRatio": "16:9", "imageSize": "1K"}
    assert result.details["aspect_ratio"] == "16:9"
    [note] = result.adjustments
    assert "1000x500" in note and "16:9 at 1K" in note and "1376x768" in note


async def test_an_unsupported_ratio_maps_to_the_nearest(provider: GeminiProvider, api: FakeGeminiServer) -> None:
    result = await run(provider, aspect_ratio="2:1")

    assert api.requests[0].image_config == {"aspectRatio": "16:9", "imageSize": "1K"}
    [note] = result.adjustments
    assert "aspect_ratio 2:1 mapped to 16:9" in note


async def test_the_default_size_needs_no_adjustment(provider: GeminiProvider, api: FakeGeminiServer) -> None:
    result = await run(provider)

    assert api.requests[0].image_config == {"aspectRatio": "1:1", "imageSize": "1K"}
    assert size_of(result.images[0].data) == (1024, 1024)
    assert result.adjustments == []


async def test_small_flash_images_use_the_512_tier_and_report_its_price(
    provider: GeminiProvider, api: FakeGeminiServer
) -> None:
    result = await run(provider, "gemini_3_1_flash_image", width=512, height=512, count=2)

    assert [request.image_config for request in api.requests] == [{"aspectRatio": "1:1", "imageSize": "512"}] * 2
    assert {request.model for request in api.requests} == {"gemini-3.1-flash-image"}
    assert [size_of(image.data) for image in result.images] == [(512, 512), (512, 512)]
    assert result.details["image_size"] == "512"
    assert result.cost == pytest.approx(0.09)
    assert result.adjustments == []


async def test_the_pro_model_gets_a_resolution_tier(provider: GeminiProvider, api: FakeGeminiServer) -> None:
    result = await run(provider, "gemini_3_pro_image", width=2048, height=1152)

    [sent] = api.requests
    assert sent.model == "gemini-3-pro-image"
    assert sent.image_config == {"aspectRatio": "16:9", "imageSize": "2K"}
    assert result.details == {"aspect_ratio": "16:9", "image_size": "2K", "api_model": "gemini-3-pro-image"}
    assert size_of(result.images[0].data) == (2752, 1536)
    assert "16:9 at 2K" in result.adjustments[0]
    assert result.cost == pytest.approx(0.134)


async def test_the_pro_model_never_gets_a_ratio_it_lacks(provider: GeminiProvider, api: FakeGeminiServer) -> None:
    """1:8 is a Flash ratio; the API refuses it for Pro, so Pro is asked for its nearest ratio instead."""
    result = await run(provider, "gemini_3_pro_image", aspect_ratio="1:8")

    assert api.requests[0].image_config == {"aspectRatio": "9:16", "imageSize": "1K"}
    assert result.adjustments == [
        "aspect_ratio 1:8 mapped to 9:16, the nearest gemini:gemini_3_pro_image supports; the image is 768x1376"
    ]


async def test_flash_makes_extreme_ratios(provider: GeminiProvider, api: FakeGeminiServer) -> None:
    result = await run(provider, "gemini_3_1_flash_image", width=768, height=3072)

    assert api.requests[0].image_config == {"aspectRatio": "1:4", "imageSize": "2K"}
    assert size_of(result.images[0].data) == (1024, 4096)
    assert result.cost == pytest.approx(0.101)


TIERS_BY_SIZE = {
    "gemini_nano_banana_2_1": ["1K", "1K", "1K", "2K", "4K"],
    "gemini_3_1_flash_image": ["512", "512", "1K", "2K", "4K"],
    "gemini_3_pro_image": ["1K", "1K", "1K", "2K", "4K"],
}


@pytest.mark.parametrize("key", TIERS_BY_SIZE)
async def test_each_model_gets_the_tier_that_covers_the_request(
    provider: GeminiProvider, api: FakeGeminiServer, key: str
) -> None:
    costs = []
    for side in (256, 512, 1024, 2048, 4096):
        result = await run(provider, key, width=side, height=side)
        assert min(size_of(result.images[0].data)) >= side
        costs.append(result.cost)
    assert [request.image_config["imageSize"] for request in api.requests] == TIERS_BY_SIZE[key]
    prices = MODELS[key].price_per_image
    assert costs == [prices.get(tier) for tier in TIERS_BY_SIZE[key]]


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
    assert size_of(result.images[0].data) == (1376, 768)


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
    (
        "404 model",
        ErrorReply(404, "NOT_FOUND", "models/x is not found for API version v1beta"),
        ModelRetiredError,
        True,
    ),
    ("404 not the API", ErrorReply(404, "Not Found", "<html>Not Found</html>"), ProviderError, False),
    ("400 other", ErrorReply(400, "FAILED_PRECONDITION", "User location is not supported"), ProviderError, False),
    ("prompt blocked", PromptBlocked("PROHIBITED_CONTENT"), ContentBlockedError, False),
    ("prompt blocked safety", PromptBlocked("SAFETY"), ContentBlockedError, False),
    ("image safety", CandidateBlocked("IMAGE_SAFETY"), ContentBlockedError, False),
    ("safety", CandidateBlocked("SAFETY", finish_message=None), ContentBlockedError, False),
    ("prohibited", CandidateBlocked("PROHIBITED_CONTENT"), ContentBlockedError, False),
    ("image prohibited", CandidateBlocked("IMAGE_PROHIBITED_CONTENT"), ContentBlockedError, False),
    ("no image", TextReply("I can only describe a lighthouse.", finish_reason="NO_IMAGE"), ProviderError, False),
    ("text only", TextReply("Here is a poem about a lighthouse."), ProviderError, False),
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
    api.on(unavailable(), model="gemini-3-pro-image")
    with pytest.raises(ProviderError):
        await run(provider, "gemini_3_pro_image")
    await run(provider, "gemini_3_1_flash_image")
    assert [request.model for request in api.requests] == ["gemini-3-pro-image", "gemini-3.1-flash-image"]


async def test_a_tier_the_model_lacks_is_refused_by_the_api(provider: GeminiProvider, api: FakeGeminiServer) -> None:
    """A user-defined entry that claims a tier its model lacks gets the API's 400, as a non-retryable error."""
    wrong = GeminiModelConfig(
        key="pro_small",
        display_name="Pro at 512",
        api_model="gemini-3-pro-image",
        max_resolution=1024,
        image_sizes=("512", "1K"),
    )
    with pytest.raises(ProviderError) as caught:
        await run(provider, wrong, width=512, height=512)

    assert api.requests[0].image_config == {"aspectRatio": "1:1", "imageSize": "512"}
    assert "400 INVALID_ARGUMENT" in caught.value.message and "'512'" in caught.value.message
    assert not caught.value.allows_fallback


# -- models Google no longer serves -----------------------------------------------------------------------


def with_model_ids(api: FakeGeminiServer, make_settings: Callable[..., Settings], model_ids: str) -> GeminiProvider:
    return GeminiProvider(make_settings(GEMINI_API_KEY=KEY, GEMINI_BASE_URL=api.url, IMAGEGEN_MODEL_IDS=model_ids))


@pytest.mark.parametrize(
    "vendor_id", ["gemini-2.5-flash-image", "gemini-3-pro-image-preview", "gemini-3.1-flash-image-preview", "gemini-9"]
)
async def test_an_id_the_api_does_not_serve_is_a_retired_model(
    api: FakeGeminiServer, make_settings: Callable[..., Settings], vendor_id: str
) -> None:
    gemini = with_model_ids(api, make_settings, f"gemini:gemini_3_1_flash_image={vendor_id}")
    try:
        with pytest.raises(ModelRetiredError) as caught:
            await run(gemini, "gemini_3_1_flash_image")
    finally:
        await gemini.aclose()

    error = caught.value
    assert api.requests[0].model == vendor_id  # the override reached the API, which answered 404 NOT_FOUND
    assert error.code == "model_retired" and error.allows_fallback
    assert f"{vendor_id!r}, the model id of gemini:gemini_3_1_flash_image" in error.message
    assert "404 NOT_FOUND" in error.message and "likely retired" in error.message
    assert 'IMAGEGEN_MODEL_IDS="gemini:gemini_3_1_flash_image=<current id>"' in error.remediation[0]
    assert error.details == {"vendor_id": vendor_id}
    assert error.model == "gemini:gemini_3_1_flash_image"


async def test_an_override_points_an_entry_at_another_served_id(
    api: FakeGeminiServer, make_settings: Callable[..., Settings]
) -> None:
    gemini = with_model_ids(api, make_settings, "gemini:gemini_3_1_flash_image=gemini-nano-banana-2.1")
    try:
        result = await run(gemini, "gemini_3_1_flash_image", width=1024, height=1024)
    finally:
        await gemini.aclose()
    assert api.requests[0].model == "gemini-nano-banana-2.1"
    assert result.details["api_model"] == "gemini-nano-banana-2.1"
