"""The few things the Gemini provider relies on in ``google-genai``, each failing with a message that names what
changed. A new SDK release that breaks one of them fails here first, with the name of the thing to adapt in
``imagegen_mcp.providers.gemini``.

The wire shapes are checked against the loopback Gemini API: what the SDK sends for the config the provider
builds, and what it makes of the answers (images, blocks, errors).
"""

from __future__ import annotations

import inspect
import socket
import typing
from collections.abc import AsyncIterator
from typing import Any

import pytest
from google import genai
from google.genai import errors, types
from pydantic import BaseModel

from imagegen_mcp.providers.gemini import API_VERSION, _is_transport_error
from tests.fakes.gemini_server import (
    GEMINI_KEY,
    CandidateBlocked,
    FakeGeminiServer,
    ImageReply,
    PromptBlocked,
    unavailable,
)

pytestmark = pytest.mark.anyio

MODEL = "gemini-3.1-flash-image"


def client_for(url: str) -> genai.Client:
    """The client exactly as the provider builds it (``GeminiProvider._connect``)."""
    return genai.Client(
        api_key=GEMINI_KEY,
        vertexai=False,
        http_options=types.HttpOptions(
            base_url=url, api_version=API_VERSION, retry_options=types.HttpRetryOptions(attempts=1)
        ),
    )


def image_config(aspect_ratio: str = "16:9", image_size: str = "512", seed: int = 11) -> types.GenerateContentConfig:
    """The config the provider sends (``GeminiProvider._generate_one``)."""
    return types.GenerateContentConfig(
        response_modalities=["TEXT", "IMAGE"],
        image_config=types.ImageConfig(aspect_ratio=aspect_ratio, image_size=image_size),
        seed=seed,
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
    )


@pytest.fixture
async def client(api: FakeGeminiServer) -> AsyncIterator[genai.Client]:
    gemini = client_for(api.url)
    yield gemini
    await gemini.aio.aclose()
    gemini.close()


# -- names and signatures ----------------------------------------------------------------------------------


def test_the_client_takes_a_key_an_explicit_backend_and_http_options() -> None:
    parameters = inspect.signature(genai.Client).parameters
    for name in ("api_key", "vertexai", "http_options"):
        assert name in parameters, f"genai.Client no longer takes {name}=: adapt GeminiProvider._connect"


FIELDS: list[tuple[type[BaseModel], tuple[str, ...]]] = [
    (types.HttpOptions, ("base_url", "api_version", "retry_options")),
    (types.HttpRetryOptions, ("attempts",)),
    (types.GenerateContentConfig, ("response_modalities", "image_config", "seed", "automatic_function_calling")),
    (types.ImageConfig, ("aspect_ratio", "image_size")),
    (types.AutomaticFunctionCallingConfig, ("disable",)),
    (types.GenerateContentResponse, ("candidates", "prompt_feedback")),
    (types.GenerateContentResponsePromptFeedback, ("block_reason", "block_reason_message")),
    (types.Candidate, ("content", "finish_reason")),
    (types.Content, ("parts",)),
    (types.Part, ("inline_data", "thought", "text")),
    (types.Blob, ("data", "mime_type")),
]


@pytest.mark.parametrize(("model", "fields"), FIELDS, ids=[model.__name__ for model, _ in FIELDS])
def test_the_types_have_the_fields_the_provider_uses(model: type[BaseModel], fields: tuple[str, ...]) -> None:
    for name in fields:
        assert name in model.model_fields, (
            f"google.genai.types.{model.__name__}.{name} is gone: adapt the Gemini provider"
        )


def test_tiers_and_ratios_are_plain_strings() -> None:
    """The provider passes '512', '1K', ... and '16:9' as strings; an enum-only field would reject them."""
    for name in ("aspect_ratio", "image_size"):
        annotation = types.ImageConfig.model_fields[name].annotation
        assert str in typing.get_args(annotation), f"types.ImageConfig.{name} no longer takes a str ({annotation})"
    assert types.ImageConfig(image_size="512").image_size == "512", "types.ImageConfig changed the tier '512'"


def test_the_seed_is_an_integer() -> None:
    annotation = types.GenerateContentConfig.model_fields["seed"].annotation
    assert int in typing.get_args(annotation), f"types.GenerateContentConfig.seed is no longer an int ({annotation})"


def test_the_async_client_has_generate_content_and_close(api: FakeGeminiServer) -> None:
    gemini = client_for(api.url)
    generate = gemini.aio.models.generate_content
    assert inspect.iscoroutinefunction(generate), "client.aio.models.generate_content is no longer a coroutine"
    parameters = inspect.signature(generate).parameters
    for name in ("model", "contents", "config"):
        assert name in parameters, f"client.aio.models.generate_content no longer takes {name}="
    assert inspect.iscoroutinefunction(gemini.aio.aclose), "client.aio.aclose() is gone: adapt GeminiProvider.aclose"
    assert callable(gemini.close), "client.close() is gone: adapt GeminiProvider.aclose"
    gemini.close()


def test_api_errors_carry_code_status_message_and_the_body() -> None:
    body = {"error": {"code": 404, "message": "models/x is not found", "status": "NOT_FOUND", "details": []}}
    error = errors.APIError(404, body)
    assert error.code == 404, "errors.APIError.code changed"
    assert error.status == "NOT_FOUND", "errors.APIError.status no longer reads error.status of the body"
    assert error.message == "models/x is not found", "errors.APIError.message no longer reads error.message"
    assert error.details == body, "errors.APIError.details is no longer the error body (google.rpc details)"


# -- on the wire -------------------------------------------------------------------------------------------


async def test_the_config_reaches_the_api_as_image_config_and_seed(client: genai.Client, api: FakeGeminiServer) -> None:
    await client.aio.models.generate_content(model=MODEL, contents="a kite", config=image_config())

    [sent] = api.requests
    assert sent.model == MODEL, "the model is no longer sent in the path /v1beta/models/{model}:generateContent"
    assert sent.api_key == GEMINI_KEY, "the key is no longer sent as x-goog-api-key"
    assert sent.prompt == "a kite", "a str prompt is no longer sent as one text part"
    assert sent.image_config == {"aspectRatio": "16:9", "imageSize": "512"}, (
        f"types.ImageConfig is no longer sent as generationConfig.imageConfig: {sent.generation_config}"
    )
    assert sent.generation_config["seed"] == 11, "GenerateContentConfig.seed is no longer generationConfig.seed"
    assert sent.generation_config["responseModalities"] == ["TEXT", "IMAGE"], "responseModalities changed"
    assert "tools" not in sent.body, "disabling automatic function calling now sends tools"


async def test_images_come_back_as_inline_bytes_with_thoughts_marked(
    client: genai.Client, api: FakeGeminiServer
) -> None:
    api.on(ImageReply(with_thought_image=True))
    response = await client.aio.models.generate_content(model=MODEL, contents="a kite", config=image_config())

    [candidate] = response.candidates or []
    parts = (candidate.content.parts if candidate.content else None) or []
    images = [part for part in parts if part.inline_data is not None]
    assert [part.thought for part in images] == [True, None], "Part.thought no longer marks thinking images"
    blob = images[-1].inline_data
    assert blob is not None and isinstance(blob.data, bytes), "Blob.data is no longer the decoded bytes"
    assert blob.data.startswith(b"\x89PNG") and blob.mime_type == "image/png", "inlineData is parsed differently"


async def test_blocks_keep_their_reason_names(client: genai.Client, api: FakeGeminiServer) -> None:
    api.on(PromptBlocked("PROHIBITED_CONTENT"), prompt_contains="prompt")
    api.on(CandidateBlocked("IMAGE_SAFETY"), prompt_contains="output")

    blocked = await client.aio.models.generate_content(model=MODEL, contents="prompt", config=image_config())
    withheld = await client.aio.models.generate_content(model=MODEL, contents="output", config=image_config())

    feedback = blocked.prompt_feedback
    assert feedback is not None and feedback.block_reason is not None, "promptFeedback.blockReason is not parsed"
    assert str(getattr(feedback.block_reason, "value", feedback.block_reason)) == "PROHIBITED_CONTENT"
    [candidate] = withheld.candidates or []
    reason = candidate.finish_reason
    # An enum member or, for a reason the SDK does not know yet, the string; the provider reads either.
    assert str(getattr(reason, "value", reason)) == "IMAGE_SAFETY", f"finishReason is parsed as {reason!r}"


async def test_an_unknown_model_raises_api_error_with_not_found(client: genai.Client, api: FakeGeminiServer) -> None:
    with pytest.raises(errors.APIError) as caught:
        await client.aio.models.generate_content(model="gemini-2.5-flash-image", contents="x", config=image_config())
    error = caught.value
    assert (error.code, error.status) == (404, "NOT_FOUND"), "a 404 NOT_FOUND body no longer gives code and status"
    assert "gemini-2.5-flash-image" in (error.message or "")


async def test_one_attempt_means_no_retry(client: genai.Client, api: FakeGeminiServer) -> None:
    api.on(unavailable())
    with pytest.raises(errors.ServerError):
        await client.aio.models.generate_content(model=MODEL, contents="x", config=image_config())
    assert len(api.requests) == 1, "HttpRetryOptions(attempts=1) no longer turns the SDK's retries off"


async def test_an_unreachable_api_raises_a_transport_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    gemini = client_for(f"http://127.0.0.1:{port}")
    caught: Any = None
    try:
        await gemini.aio.models.generate_content(model=MODEL, contents="x", config=image_config())
    except Exception as exc:
        caught = exc
    finally:
        await gemini.aio.aclose()
        gemini.close()
    # Which HTTP stack the async client uses depends on what is installed (aiohttp when it is, else httpx).
    assert caught is not None and _is_transport_error(caught), (
        f"connection failures now raise {type(caught).__name__}, which the provider does not recognise as one: "
        "add its base class to _TRANSPORT_ERRORS"
    )
