"""The Runware provider through the real ``runware`` SDK, against the loopback Runware server."""

from __future__ import annotations

import io
import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import pytest
from PIL import Image

from imagegen_mcp.config import Settings
from imagegen_mcp.errors import ErrorCode, ImageGenError
from imagegen_mcp.providers.base import GenerationRequest, Progress, ProviderResult, registry
from imagegen_mcp.providers.runware import RUNWARE_MODELS, RunwareModelConfig, RunwareProvider
from imagegen_mcp.requests import ImageRequest, fit_request
from tests.fakes.runware_server import COST_PER_IMAGE, DEFAULT_KEY, DropMode, FakeRunwareServer

MODELS = registry(RUNWARE_MODELS)

pytestmark = pytest.mark.anyio

PROMPT = "a lighthouse on a cliff at dusk"


class ProgressLog:
    def __init__(self) -> None:
        self.messages: list[str] = []

    async def __call__(self, value: float, total: float | None, message: str | None) -> None:
        self.messages.append(message or "")


@pytest.fixture
async def make_provider(
    runware: FakeRunwareServer, make_settings: Callable[..., Settings]
) -> AsyncIterator[Callable[..., RunwareProvider]]:
    """Providers pointed at the loopback server; each is closed (``aclose``) at the end of the test."""
    made: list[RunwareProvider] = []

    def make(**environ: str) -> RunwareProvider:
        env = {"RUNWARE_API_KEY": DEFAULT_KEY, "RUNWARE_URL": runware.url, **environ}
        made.append(RunwareProvider(make_settings(**env)))
        return made[-1]

    yield make
    for provider in made:
        await provider.aclose()


@pytest.fixture
def provider(make_provider: Callable[..., RunwareProvider]) -> RunwareProvider:
    return make_provider()


def job(model: str = "juggernaut_pro", seed: int = 1234, **arguments: Any) -> GenerationRequest:
    """A request resolved for ``model`` the way the service resolves it."""
    request = ImageRequest(prompt=arguments.pop("prompt", PROMPT), **arguments)
    resolved, _ = fit_request(request, MODELS[model], f"runware:{model}", primary=True, seed=seed)
    return resolved


async def generate(
    provider: RunwareProvider, request: GenerationRequest | None = None, model: str = "juggernaut_pro"
) -> ProviderResult:
    return await provider.generate(request or job(model), MODELS[model], Progress())


async def failure(provider: RunwareProvider, request: GenerationRequest | None = None) -> ImageGenError:
    with pytest.raises(ImageGenError) as caught:
        await generate(provider, request)
    return caught.value


async def eventually(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(0.02)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# -- generation ---------------------------------------------------------------------------------------


async def test_generates_count_images_with_the_catalog_parameters(
    provider: RunwareProvider, runware: FakeRunwareServer
) -> None:
    progress = ProgressLog()
    request = job(count=3, seed=41, width=768, height=512)
    result = await provider.generate(request, MODELS["juggernaut_pro"], Progress(progress))

    assert [image.seed for image in result.images] == [41, 42, 43]
    for image in result.images:
        assert image.mime_type == "image/png"
        assert Image.open(io.BytesIO(image.data)).size == (768, 512)
    assert result.cost == pytest.approx(3 * COST_PER_IMAGE)
    (sent,) = runware.requests
    assert result.details == {"air": "rundiffusion:130@100", "task_uuid": sent["taskUUID"]}
    assert sent["model"] == "rundiffusion:130@100"
    assert (sent["steps"], sent["CFGScale"]) == (20, 7.5)
    assert sent["numberResults"] == 3 and sent["seed"] == 41
    assert (sent["width"], sent["height"]) == (768, 512)
    assert sent["positivePrompt"] == PROMPT
    assert sent["negativePrompt"] == "worst quality, low quality, blurry"
    assert (sent["outputType"], sent["outputFormat"], sent["includeCost"]) == ("base64Data", "PNG", True)
    assert [auth["apiKey"] for auth in runware.auth_requests] == [DEFAULT_KEY]
    assert runware.pings >= 1  # the SDK's heartbeat starts with the connection, and is answered
    assert [message.split()[0] for message in progress.messages] == ["connecting", "submitted", "received"]


@pytest.mark.parametrize("key", sorted(MODELS))
async def test_each_model_sends_its_air_id_steps_and_cfg(
    provider: RunwareProvider, runware: FakeRunwareServer, key: str
) -> None:
    model = MODELS[key]
    assert isinstance(model, RunwareModelConfig)
    await generate(provider, job(key, width=512, height=512), key)
    (sent,) = runware.requests
    assert sent["model"] == model.air
    assert (sent["steps"], sent["CFGScale"]) == (model.default_steps, model.default_guidance)


async def test_caller_values_and_negative_prompt_are_sent(
    provider: RunwareProvider, runware: FakeRunwareServer
) -> None:
    await generate(provider, job(steps=30, guidance_scale=5.0, negative_prompt="text, watermark"))
    (sent,) = runware.requests
    assert (sent["steps"], sent["CFGScale"], sent["negativePrompt"]) == (30, 5.0, "text, watermark")


async def test_the_seeds_runware_reports_are_the_ones_returned(
    provider: RunwareProvider, runware: FakeRunwareServer
) -> None:
    runware.seed_override = 777
    result = await generate(provider, job(count=2, seed=5))
    assert runware.requests[0]["seed"] == 5
    assert [image.seed for image in result.images] == [777, 778]


async def test_without_a_key_it_is_unavailable_and_never_connects(
    make_provider: Callable[..., RunwareProvider], runware: FakeRunwareServer
) -> None:
    provider = make_provider(RUNWARE_API_KEY="")
    assert provider.check().reason == "RUNWARE_API_KEY is not set"
    error = await failure(provider)
    assert error.code == ErrorCode.PROVIDER_UNAVAILABLE
    assert any("RUNWARE_API_KEY" in step for step in error.remediation)
    assert runware.connections == 0


# -- the shared connection ----------------------------------------------------------------------------


async def test_nothing_connects_before_the_first_generation(
    provider: RunwareProvider, runware: FakeRunwareServer
) -> None:
    assert provider.check().met
    await anyio.sleep(0.1)
    assert runware.connections == 0
    await generate(provider)
    await generate(provider)
    assert runware.connections == 1
    assert len(runware.auth_requests) == 1


async def test_sixteen_concurrent_generations_share_one_connection(
    provider: RunwareProvider, runware: FakeRunwareServer
) -> None:
    runware.delay_s = 0.3
    results: dict[int, ProviderResult] = {}

    async def one(seed: int) -> None:
        results[seed] = await generate(provider, job(seed=seed, width=256, height=256))

    async with anyio.create_task_group() as group:
        for seed in range(100, 116):
            group.start_soon(one, seed)

    assert runware.connections == 1
    assert len(runware.auth_requests) == 1
    assert runware.max_in_flight == 16
    assert len({request["taskUUID"] for request in runware.requests}) == 16
    # Each answer went to the generation that asked for it.
    assert all([image.seed for image in result.images] == [seed] for seed, result in results.items())


async def test_aclose_closes_the_connection(provider: RunwareProvider, runware: FakeRunwareServer) -> None:
    await generate(provider)
    assert runware.open_connections == 1
    await provider.aclose()
    await eventually(lambda: runware.open_connections == 0)


@pytest.mark.parametrize("mode", ["abort", "close"])
async def test_a_dropped_connection_fails_fast_and_is_reopened_by_the_next_request(
    provider: RunwareProvider, runware: FakeRunwareServer, mode: DropMode
) -> None:
    await generate(provider)
    runware.drop_mode = mode
    runware.drop_next = 1
    started = time.perf_counter()
    error = await failure(provider)
    # Well before the SDK's own detection (a 30 s ping timeout for a clean close).
    assert time.perf_counter() - started < 2
    assert error.code == ErrorCode.PROVIDER_ERROR
    assert error.retryable and error.allows_fallback
    assert "connection" in error.message

    result = await generate(provider)
    assert len(result.images) == 1
    assert runware.connections == 2
    # The SDK's background reconnect loop (first try after about 1 s) was stopped: nothing else connects.
    await anyio.sleep(1.5)
    assert runware.connections == 2
    assert runware.open_connections == 1


async def test_a_cancelled_generation_leaves_the_connection_healthy(
    provider: RunwareProvider, runware: FakeRunwareServer
) -> None:
    runware.delay_s = 10
    with anyio.move_on_after(0.5) as scope:
        await generate(provider)
    assert scope.cancelled_caught
    assert len(runware.requests) == 1

    runware.delay_s = 0
    result = await generate(provider)
    assert len(result.images) == 1
    assert runware.connections == 1
    assert len(runware.requests) == 2


# -- errors -------------------------------------------------------------------------------------------


async def test_a_rejected_key_fails_within_seconds_without_retrying(
    make_provider: Callable[..., RunwareProvider], runware: FakeRunwareServer
) -> None:
    provider = make_provider(RUNWARE_API_KEY="rw-wrong-key-0123456789")
    started = time.perf_counter()
    error = await failure(provider)
    elapsed = time.perf_counter() - started
    assert elapsed < 2, f"a rejected key took {elapsed:.2f} s"
    assert error.code == ErrorCode.AUTHENTICATION_FAILED and error.allows_fallback
    assert "Invalid API key" in error.message
    remediation = " ".join(error.remediation)
    assert "RUNWARE_API_KEY" in remediation and "https://my.runware.ai/keys" in remediation
    assert "rw-wrong-key-0123456789" not in error.to_payload().model_dump_json()
    assert runware.requests == []
    # One attempt, and no background retries from the SDK.
    await anyio.sleep(1.5)
    assert runware.connections == len(runware.auth_requests) == 1


async def test_a_rejected_key_is_tried_again_on_the_next_request(
    provider: RunwareProvider, runware: FakeRunwareServer
) -> None:
    runware.reject_key = True
    assert (await failure(provider)).code == ErrorCode.AUTHENTICATION_FAILED
    runware.reject_key = False
    assert len((await generate(provider)).images) == 1
    assert runware.connections == 2


async def test_insufficient_credits_is_a_provider_error_with_remediation(
    provider: RunwareProvider, runware: FakeRunwareServer
) -> None:
    runware.insufficient_credits()
    error = await failure(provider)
    assert error.code == ErrorCode.PROVIDER_ERROR
    assert not error.retryable and not error.allows_fallback
    assert "Insufficient credits" in error.message
    assert any("https://my.runware.ai/wallet" in step for step in error.remediation)
    assert error.details["code"] == "insufficientCredits"


async def test_a_parameter_runware_rejects_is_an_invalid_request_with_its_message(
    provider: RunwareProvider, runware: FakeRunwareServer
) -> None:
    error = await failure(provider, job(prompt="a " * 1600))
    assert error.code == ErrorCode.INVALID_REQUEST and not error.allows_fallback
    assert "The prompt must have between 2 and 3000 characters" in error.message
    assert error.details["parameter"] == "positivePrompt"
    assert "positivePrompt" in error.remediation[0]
    # A task error leaves the connection as it was.
    assert len((await generate(provider)).images) == 1
    assert runware.connections == 1


@pytest.mark.parametrize(
    ("code", "expected", "retryable"),
    [
        ("rateLimitExceeded", ErrorCode.RATE_LIMITED, True),
        ("timeoutProvider", ErrorCode.PROVIDER_TIMEOUT, True),
        ("internalServerError", ErrorCode.PROVIDER_ERROR, True),
        ("nsfwContentDetected", ErrorCode.CONTENT_BLOCKED, False),
        ("invalidModel", ErrorCode.INVALID_REQUEST, False),
        ("somethingUnheardOf", ErrorCode.PROVIDER_ERROR, False),
    ],
)
async def test_task_errors_are_mapped_by_code(
    provider: RunwareProvider, runware: FakeRunwareServer, code: str, expected: ErrorCode, retryable: bool
) -> None:
    runware.task_error = {"code": code, "message": f"Runware says {code}."}
    error = await failure(provider)
    assert error.code == expected
    assert error.retryable is retryable
    assert f"Runware says {code}." in error.message


async def test_a_refused_connection_is_a_retryable_provider_error(
    make_provider: Callable[..., RunwareProvider],
) -> None:
    url = f"ws://127.0.0.1:{free_port()}/v1"
    provider = make_provider(RUNWARE_URL=url)
    started = time.perf_counter()
    error = await failure(provider)
    assert time.perf_counter() - started < 2
    assert error.code == ErrorCode.PROVIDER_ERROR and error.retryable and error.allows_fallback
    assert url in error.message
    assert any("RUNWARE_URL" in step for step in error.remediation)


@pytest.mark.parametrize(
    ("status", "expected", "retryable"),
    [
        (503, ErrorCode.PROVIDER_ERROR, True),
        (502, ErrorCode.PROVIDER_ERROR, True),
        (401, ErrorCode.AUTHENTICATION_FAILED, False),
        (429, ErrorCode.RATE_LIMITED, True),
        (404, ErrorCode.PROVIDER_ERROR, False),
    ],
)
async def test_a_refused_handshake_is_mapped_by_http_status(
    provider: RunwareProvider, runware: FakeRunwareServer, status: int, expected: ErrorCode, retryable: bool
) -> None:
    runware.handshake_status = status
    error = await failure(provider)
    assert error.code == expected and error.retryable is retryable
    assert f"HTTP {status}" in error.message


async def test_an_unanswered_authentication_times_out(
    make_provider: Callable[..., RunwareProvider], runware: FakeRunwareServer
) -> None:
    runware.answer_auth = False
    provider = make_provider(RUNWARE_CONNECT_TIMEOUT_S="0.5")
    started = time.perf_counter()
    error = await failure(provider)
    assert 0.4 < time.perf_counter() - started < 2
    assert error.code == ErrorCode.PROVIDER_TIMEOUT and error.allows_fallback
    assert any("RUNWARE_CONNECT_TIMEOUT_S" in step for step in error.remediation)
    await eventually(lambda: runware.open_connections == 0)


async def test_the_key_never_reaches_errors_or_logs(
    make_provider: Callable[..., RunwareProvider], runware: FakeRunwareServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    runware.api_key = "rw-secret-key-abcdef123456"
    good = make_provider(RUNWARE_API_KEY=runware.api_key)
    bad = make_provider(RUNWARE_API_KEY="rw-other-key-654321fedcba")
    result = await generate(good)
    runware.drop_next = 1
    dropped = await failure(good)
    rejected = await failure(bad)
    texts = [caplog.text, json.dumps(result.details)]
    texts += [error.to_payload().model_dump_json() for error in (dropped, rejected)]
    for text in texts:
        assert runware.api_key not in text
        assert "rw-other-key-654321fedcba" not in text
