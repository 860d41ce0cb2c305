"""The Runware provider through the real ``runware-sdk``, against the loopback Runware API, on both transports."""

from __future__ import annotations

import functools
import io
import json
import logging
import socket
import sys
import threading
import time
import traceback
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
from PIL import Image

from imagegen_mcp.config import Settings
from imagegen_mcp.errors import ErrorCode, ImageGenError
from imagegen_mcp.providers.base import MAX_SEED, GenerationRequest, Progress, ProviderResult, registry
from imagegen_mcp.providers.runware import RUNWARE_MODELS, RunwareModelConfig, RunwareProvider
from imagegen_mcp.requests import ImageRequest, fit_request
from tests.fakes.runware_api import COST_PER_IMAGE, DEFAULT_KEY, DropMode, FakeRunwareAPI

MODELS = registry(RUNWARE_MODELS)

pytestmark = pytest.mark.anyio

PROMPT = "a lighthouse on a cliff at dusk"
TRANSPORTS = ["websocket", "rest"]


class ProgressLog:
    def __init__(self) -> None:
        self.messages: list[str] = []

    async def __call__(self, value: float, total: float | None, message: str | None) -> None:
        self.messages.append(message or "")


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


@pytest.fixture
async def make_provider(
    runware: FakeRunwareAPI, make_settings: Callable[..., Settings], transport: str
) -> AsyncIterator[Callable[..., RunwareProvider]]:
    """Providers pointed at the loopback API over ``transport``; each is closed (``aclose``) at the end."""
    made: list[RunwareProvider] = []

    def make(**environ: str) -> RunwareProvider:
        env = {
            "RUNWARE_API_KEY": DEFAULT_KEY,
            "RUNWARE_URL": runware.ws_url,
            "RUNWARE_HTTP_URL": runware.http_url,
            "RUNWARE_TRANSPORT": transport,
            **environ,
        }
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
    return await provider.generate(request or job(model), provider.models[model], Progress())


async def failure(provider: RunwareProvider, request: GenerationRequest | None = None) -> ImageGenError:
    with pytest.raises(ImageGenError) as caught:
        await generate(provider, request)
    return caught.value


async def eventually(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(0.02)


def connections(runware: FakeRunwareAPI, transport: str) -> int:
    """Connections the fake accepted: WebSockets, or the TCP connections REST calls came over."""
    return runware.connections if transport == "websocket" else runware.http_connections


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# -- generation ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("output", ["url", "base64"])
async def test_generates_count_images_with_seeds_cost_and_the_catalog_parameters(
    make_provider: Callable[..., RunwareProvider], runware: FakeRunwareAPI, transport: str, output: str
) -> None:
    provider = make_provider(RUNWARE_OUTPUT=output)
    progress = ProgressLog()
    result = await provider.generate(
        job(count=3, seed=41, width=768, height=512), MODELS["juggernaut_pro"], Progress(progress)
    )

    assert [image.seed for image in result.images] == [41, 42, 43]
    for image in result.images:
        assert image.mime_type == "image/png"
        assert Image.open(io.BytesIO(image.data)).size == (768, 512)
    assert result.cost == pytest.approx(3 * COST_PER_IMAGE)
    # One task per image, each with its own seed, sent over the one connection.
    sent = runware.requests
    assert result.details == {"air": "rundiffusion:130@100", "task_uuids": [task["taskUUID"] for task in sent]}
    assert [task["seed"] for task in sent] == [41, 42, 43]
    for task in sent:
        assert (task["taskType"], task["deliveryMethod"], task["numberResults"]) == ("imageInference", "sync", 1)
        assert task["model"] == "rundiffusion:130@100"
        assert (task["steps"], task["CFGScale"], task["width"], task["height"]) == (20, 7.5, 768, 512)
        assert task["positivePrompt"] == PROMPT
        assert task["negativePrompt"] == "worst quality, low quality, blurry"
        assert (task["outputFormat"], task["includeCost"]) == ("PNG", True)
        assert task["outputType"] == {"url": "URL", "base64": "base64Data"}[output]
    assert runware.image_downloads == (3 if output == "url" else 0)
    if transport == "websocket":
        assert runware.connections == 1
    else:  # each concurrent call has its own TCP connection (HTTP/1.1), from the one pool
        assert 1 <= runware.http_connections <= 3
    assert [message.split()[0] for message in progress.messages] == ["connecting", "submitted", "received"]


@pytest.mark.parametrize("key", sorted(MODELS))
async def test_each_model_sends_its_air_id_steps_and_cfg(
    provider: RunwareProvider, runware: FakeRunwareAPI, key: str
) -> None:
    model = MODELS[key]
    assert isinstance(model, RunwareModelConfig)
    await generate(provider, job(key, width=512, height=512), key)
    (sent,) = runware.requests
    assert sent["model"] == model.air
    # A model without tuned values (Kontext [pro] takes none) sends none.
    assert (sent.get("steps"), sent.get("CFGScale")) == (model.default_steps, model.default_guidance)


async def test_caller_values_and_negative_prompt_are_sent(provider: RunwareProvider, runware: FakeRunwareAPI) -> None:
    await generate(provider, job(steps=30, guidance_scale=5.0, negative_prompt="text, watermark"))
    (sent,) = runware.requests
    assert (sent["steps"], sent["CFGScale"], sent["negativePrompt"]) == (30, 5.0, "text, watermark")


async def test_seeds_at_the_top_of_the_range_are_ones_a_caller_can_pass_back(
    provider: RunwareProvider, runware: FakeRunwareAPI
) -> None:
    pair = await generate(provider, job(count=2, seed=MAX_SEED))
    assert [image.seed for image in pair.images] == [MAX_SEED, 0]
    # Runware's seeds start at 1: seed 0 travels as MAX_SEED + 1.
    assert [task["seed"] for task in runware.requests] == [MAX_SEED, MAX_SEED + 1]
    for image in pair.images:
        (alone,) = (await generate(provider, job(seed=image.seed))).images
        assert alone.seed == image.seed
        assert alone.data == image.data


async def test_the_seed_runware_reports_is_the_one_returned(provider: RunwareProvider, runware: FakeRunwareAPI) -> None:
    runware.seed_override = 777
    result = await generate(provider, job(count=2, seed=5))
    assert [task["seed"] for task in runware.requests] == [5, 6]
    assert [image.seed for image in result.images] == [777, 777]
    assert result.adjustments == []


async def test_a_reported_seed_a_caller_cannot_pass_back_is_said_and_the_asked_one_kept(
    provider: RunwareProvider, runware: FakeRunwareAPI
) -> None:
    runware.seed_override = 2**40
    result = await generate(provider, job(seed=5))
    assert [image.seed for image in result.images] == [5]
    assert result.adjustments == [
        f"Runware reports seed {2**40} for an image; seed 5 was asked for and is the one reported"
    ]


async def test_without_a_key_it_is_unavailable_and_never_connects(
    make_provider: Callable[..., RunwareProvider], runware: FakeRunwareAPI
) -> None:
    provider = make_provider(RUNWARE_API_KEY="")
    assert provider.check().reason == "RUNWARE_API_KEY is not set"
    error = await failure(provider)
    assert error.code == ErrorCode.PROVIDER_UNAVAILABLE
    assert any("RUNWARE_API_KEY" in step for step in error.remediation)
    assert runware.connections == runware.http_requests == 0


# -- the shared connection ----------------------------------------------------------------------------


async def test_nothing_connects_before_the_first_generation_and_later_ones_reuse_it(
    provider: RunwareProvider, runware: FakeRunwareAPI, transport: str
) -> None:
    assert provider.check().met
    await anyio.sleep(0.1)
    assert connections(runware, transport) == 0
    await generate(provider)
    await generate(provider)
    assert connections(runware, transport) == 1
    assert len(runware.auth_requests) == (1 if transport == "websocket" else 0)


async def test_sixteen_concurrent_generations_share_one_connection(
    provider: RunwareProvider, runware: FakeRunwareAPI, transport: str
) -> None:
    runware.delay_s = 0.3
    results: dict[int, ProviderResult] = {}

    async def one(seed: int) -> None:
        results[seed] = await generate(provider, job(seed=seed, width=256, height=256))

    async def burst(seeds: range) -> None:
        async with anyio.create_task_group() as group:
            for seed in seeds:
                group.start_soon(one, seed)

    await burst(range(100, 116))
    assert runware.max_in_flight == 16
    assert len({request["taskUUID"] for request in runware.requests}) == 16
    # Each answer went to the generation that asked for it.
    assert all([image.seed for image in result.images] == [seed] for seed, result in results.items())
    if transport == "websocket":
        assert runware.connections == 1
        assert len(runware.auth_requests) == 1
    else:
        # One pool: HTTP/1.1 carries one call at a time per TCP connection, and a second burst reuses them.
        opened = runware.http_connections
        assert opened <= 16
        await burst(range(200, 216))
        assert runware.http_connections == opened


@pytest.mark.parametrize(("setting", "compressed"), [({}, 0), ({"RUNWARE_WS_COMPRESSION": "true"}, 1)])
@pytest.mark.parametrize("transport", ["websocket"])
async def test_permessage_deflate_is_offered_only_when_set(
    make_provider: Callable[..., RunwareProvider], runware: FakeRunwareAPI, setting: dict[str, str], compressed: int
) -> None:
    await generate(make_provider(**setting))
    assert (runware.connections, runware.compressed_connections) == (1, compressed)


async def test_aclose_closes_the_connection_and_the_next_generation_opens_a_new_one(
    provider: RunwareProvider, runware: FakeRunwareAPI, transport: str
) -> None:
    await generate(provider)
    assert runware.open_connections == (1 if transport == "websocket" else 0)
    await provider.aclose()
    await eventually(lambda: runware.open_connections == 0)
    await generate(provider)
    assert connections(runware, transport) == 2


@pytest.mark.parametrize("mode", ["abort", "close"])
async def test_a_dropped_connection_fails_fast_and_is_reopened_by_the_next_request(
    provider: RunwareProvider, runware: FakeRunwareAPI, transport: str, mode: DropMode
) -> None:
    await generate(provider)
    runware.drop_mode = mode
    runware.drop_next = 1
    started = time.perf_counter()
    error = await failure(provider)
    assert time.perf_counter() - started < 2
    assert error.code == ErrorCode.PROVIDER_ERROR
    assert error.retryable and error.allows_fallback

    result = await generate(provider)
    assert len(result.images) == 1
    if transport == "websocket":
        assert "connection" in error.message
        assert runware.connections == 2
        # The SDK does not reconnect by itself in the background: nothing else connects.
        await anyio.sleep(1.5)
        assert runware.connections == 2
        assert runware.open_connections == 1
    # Sent once: the SDK retried nothing (a resent task would be a second bill, or a conflictTaskUUID).
    assert len(runware.requests) == 3


async def test_a_cancelled_generation_abandons_its_task_and_leaves_the_connection_healthy(
    provider: RunwareProvider, runware: FakeRunwareAPI, transport: str
) -> None:
    runware.delay_s = 1.0
    with anyio.move_on_after(0.3) as scope:
        await generate(provider)
    assert scope.cancelled_caught
    (cancelled,) = runware.tasks.values()

    runware.delay_s = 0
    assert len((await generate(provider)).images) == 1
    await eventually(lambda: cancelled.status == "success")
    assert len((await generate(provider)).images) == 1
    if transport == "websocket":
        # Runware pushes the answer to the open socket anyway; the SDK discards it (nobody waits for it).
        assert cancelled.delivered
        assert runware.connections == 1
    else:
        # The POST was given up, so its answer never reached the client; HTTP/1.1 can only give a request up
        # by closing its TCP connection, and the pool opened another.
        assert runware.abandoned() == [cancelled]
        assert runware.http_connections == 2


# -- downloads ----------------------------------------------------------------------------------------


def decoding_threads() -> list[str]:
    """Threads now inside a decode of arriving bytes."""
    return [
        str(thread_id)
        for thread_id, frame in sys._current_frames().items()
        if any(entry.name == "decode_arriving" for entry in traceback.extract_stack(frame))
    ]


async def test_an_image_on_a_slow_link_is_decoded_while_it_downloads(
    make_provider: Callable[..., RunwareProvider], runware: FakeRunwareAPI
) -> None:
    provider = make_provider(RUNWARE_OUTPUT="url")
    runware.download_bytes_per_s = 2_000_000.0  # a 512x512 photo-like PNG comes in about 0.3 s
    (image,) = (await generate(provider, job(width=512, height=512))).images

    # The pixels stand for the server's decode: they are exactly those of the bytes that arrived.
    assert image.decoded is not None
    with Image.open(io.BytesIO(image.data)) as stored:
        stored.load()
        assert (image.decoded.size, image.decoded.mode) == (stored.size, stored.mode) == ((512, 512), "RGB")
        assert image.decoded.tobytes() == stored.tobytes()
    assert decoding_threads() == []


async def test_a_generation_cancelled_while_its_image_downloads_stops_the_decode(
    make_provider: Callable[..., RunwareProvider], runware: FakeRunwareAPI
) -> None:
    provider = make_provider(RUNWARE_OUTPUT="url")
    runware.download_bytes_per_s = 50_000.0  # a 256x256 photo-like PNG (~140 KB) would take about 3 s
    with anyio.move_on_after(4) as overall:
        async with anyio.create_task_group() as group:
            group.start_soon(generate, provider, job(width=256, height=256))
            await eventually(lambda: runware.downloads_in_flight == 1 and decoding_threads() != [])
            group.cancel_scope.cancel()
    assert not overall.cancelled_caught  # the cancellation did not wait for the download or the decode
    await eventually(lambda: decoding_threads() == [])

    runware.download_bytes_per_s = None
    assert len((await generate(provider)).images) == 1


# -- errors -------------------------------------------------------------------------------------------


async def test_a_rejected_key_fails_within_seconds_without_retrying(
    make_provider: Callable[..., RunwareProvider], runware: FakeRunwareAPI, transport: str
) -> None:
    provider = make_provider(RUNWARE_API_KEY="rw-wrong-key-0123456789")
    error = await failure(provider)
    assert len(runware.auth_requests) + runware.http_requests == 1  # refused once, never tried again
    assert error.code == ErrorCode.AUTHENTICATION_FAILED and error.allows_fallback
    assert "Invalid API key" in error.message
    remediation = " ".join(error.remediation)
    assert "RUNWARE_API_KEY" in remediation and "https://my.runware.ai/keys" in remediation
    assert "rw-wrong-key-0123456789" not in error.to_payload().model_dump_json()
    assert runware.requests == []
    # One attempt, and no retries from the SDK.
    await anyio.sleep(1.5)
    if transport == "websocket":
        assert runware.connections == len(runware.auth_requests) == 1
    else:
        assert runware.http_requests == 1


async def test_a_rejected_key_is_tried_again_on_the_next_request(
    provider: RunwareProvider, runware: FakeRunwareAPI
) -> None:
    runware.reject_key = True
    assert (await failure(provider)).code == ErrorCode.AUTHENTICATION_FAILED
    runware.reject_key = False
    assert len((await generate(provider)).images) == 1


async def test_insufficient_credits_is_a_provider_error_with_remediation(
    provider: RunwareProvider, runware: FakeRunwareAPI
) -> None:
    runware.insufficient_credits()
    error = await failure(provider)
    assert error.code == ErrorCode.PROVIDER_ERROR
    assert not error.retryable and not error.allows_fallback
    assert "Insufficient credits" in error.message
    assert any("https://my.runware.ai/wallet" in step for step in error.remediation)
    assert error.details["sdk_code"] == "quota"


async def test_a_parameter_runware_rejects_is_an_invalid_request_with_its_message(
    provider: RunwareProvider, runware: FakeRunwareAPI, transport: str
) -> None:
    error = await failure(provider, job(prompt="a " * 1600))
    assert error.code == ErrorCode.INVALID_REQUEST and not error.allows_fallback
    assert "The prompt must have between 2 and 3000 characters" in error.message
    assert error.details["parameter"] == "positivePrompt"
    assert "positivePrompt" in error.remediation[0]
    # A task error leaves the connection as it was.
    assert len((await generate(provider)).images) == 1
    assert connections(runware, transport) == 1


async def test_an_air_id_runware_does_not_know_is_model_retired_naming_the_fix(
    make_provider: Callable[..., RunwareProvider], runware: FakeRunwareAPI
) -> None:
    provider = make_provider(IMAGEGEN_MODEL_IDS="runware:juggernaut_pro=rundiffusion:999@1")
    error = await failure(provider)
    assert error.code == ErrorCode.MODEL_RETIRED and error.allows_fallback
    assert "'rundiffusion:999@1'" in error.message and "valid AIR identifier" in error.message
    assert 'IMAGEGEN_MODEL_IDS="runware:juggernaut_pro=<current id>"' in error.remediation[0]
    assert error.details["vendor_id"] == "rundiffusion:999@1"
    assert [task["model"] for task in runware.requests] == ["rundiffusion:999@1"]


async def test_a_model_id_that_is_not_an_air_id_is_model_retired_without_asking_anyone(
    make_provider: Callable[..., RunwareProvider], runware: FakeRunwareAPI
) -> None:
    # The SDK would look such a name up in Runware's schema registry first.
    provider = make_provider(IMAGEGEN_MODEL_IDS="runware:juggernaut_pro=juggernaut-pro-flux")
    error = await failure(provider)
    assert error.code == ErrorCode.MODEL_RETIRED
    assert "not an AIR identifier" in error.message
    assert runware.connections == runware.http_requests == 0


@pytest.mark.parametrize(
    ("code", "expected", "retryable"),
    [
        ("rateLimitExceeded", ErrorCode.RATE_LIMITED, True),
        ("internalServerError", ErrorCode.PROVIDER_ERROR, True),
        ("modelUnavailable", ErrorCode.PROVIDER_ERROR, True),
        ("nsfwContentDetected", ErrorCode.CONTENT_BLOCKED, False),
        ("invalidSteps", ErrorCode.INVALID_REQUEST, False),
        ("inferenceTimeout", ErrorCode.PROVIDER_TIMEOUT, True),
    ],
)
async def test_task_errors_are_mapped_by_the_sdks_error_class(
    provider: RunwareProvider, runware: FakeRunwareAPI, code: str, expected: ErrorCode, retryable: bool
) -> None:
    runware.task_error = {"code": code, "message": f"Runware says {code}."}
    error = await failure(provider)
    assert error.code == expected
    assert error.retryable is retryable
    assert error.allows_fallback is (expected != ErrorCode.CONTENT_BLOCKED and retryable)
    assert f"Runware says {code}." in error.message


@pytest.mark.parametrize("code", ["timeoutProvider", "somethingUnheardOf"])
async def test_a_code_the_sdk_does_not_classify_is_decided_by_the_http_status(
    provider: RunwareProvider, runware: FakeRunwareAPI, transport: str, code: str
) -> None:
    # The SDK keeps none of Runware's codes ("unknown"): over REST the status (here 500) says more.
    runware.task_error = {"code": code, "message": f"Runware says {code}."}
    error = await failure(provider)
    assert error.code == ErrorCode.PROVIDER_ERROR
    assert error.retryable is (transport == "rest")
    assert f"Runware says {code}." in error.message


async def test_an_image_link_that_does_not_answer_with_the_image_is_a_retryable_provider_error(
    provider: RunwareProvider, runware: FakeRunwareAPI
) -> None:
    runware.download_status = 404
    error = await failure(provider)
    assert error.code == ErrorCode.PROVIDER_ERROR and error.retryable and error.allows_fallback
    assert "Runware's image host answered HTTP 404" in error.message
    assert any("RUNWARE_OUTPUT=base64" in step for step in error.remediation)


async def test_a_refused_connection_is_a_retryable_provider_error(
    make_provider: Callable[..., RunwareProvider], transport: str
) -> None:
    port = free_port()
    provider = make_provider(RUNWARE_URL=f"ws://127.0.0.1:{port}/v1", RUNWARE_HTTP_URL=f"http://127.0.0.1:{port}/v1")
    started = time.perf_counter()
    error = await failure(provider)
    assert time.perf_counter() - started < 2
    assert error.code == ErrorCode.PROVIDER_ERROR and error.retryable and error.allows_fallback
    assert f"127.0.0.1:{port}/v1" in error.message
    variable = "RUNWARE_URL" if transport == "websocket" else "RUNWARE_HTTP_URL"
    assert any(variable in step for step in error.remediation)


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
async def test_a_request_refused_with_an_http_status_is_mapped_by_it(
    provider: RunwareProvider, runware: FakeRunwareAPI, status: int, expected: ErrorCode, retryable: bool
) -> None:
    runware.refuse_status = status
    error = await failure(provider)
    assert error.code == expected and error.retryable is retryable
    assert f"HTTP {status}" in error.message
    assert error.details["http_status"] == status


@pytest.mark.parametrize("transport", ["websocket"])  # REST sends the key with every request
async def test_an_unanswered_authentication_times_out(
    make_provider: Callable[..., RunwareProvider], runware: FakeRunwareAPI
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
    make_provider: Callable[..., RunwareProvider], runware: FakeRunwareAPI, caplog: pytest.LogCaptureFixture
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


# -- offline: nothing but the inference endpoint ------------------------------------------------------


@dataclass
class Network:
    """Name lookups and outgoing connections while it watches. Every name but ``localhost`` resolves to a
    black hole: a listener that accepts and never answers, so a client that goes there stalls."""

    black_hole: socket.socket
    lookups: list[str] = field(default_factory=list)
    connects: list[Any] = field(default_factory=list)
    watching: bool = False

    @property
    def black_hole_address(self) -> tuple[str, int]:
        address: tuple[str, int] = self.black_hole.getsockname()
        return address

    def audit(self, event: str, args: tuple[Any, ...]) -> None:
        if self.watching and event == "socket.connect":
            self.connects.append(args[1])


#: The networks being watched. An audit hook cannot be removed: one is installed, once, and serves them all.
_networks: list[Network] = []


def _audit(event: str, args: tuple[Any, ...]) -> None:
    for network in _networks:
        network.audit(event, args)


@functools.cache
def _install_audit_hook() -> None:
    sys.addaudithook(_audit)


@pytest.fixture
def network(monkeypatch: pytest.MonkeyPatch) -> Iterator[Network]:
    black_hole = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(black_hole.accept()[0]), daemon=True).start()
    watched = Network(black_hole)
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host in ("localhost", "127.0.0.1", None):
            return real_getaddrinfo("127.0.0.1", port, *args, **kwargs)
        watched.lookups.append(str(host))
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", watched.black_hole_address)]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    for variable in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(variable, raising=False)
    _install_audit_hook()
    _networks.append(watched)
    watched.watching = True
    try:
        yield watched
    finally:
        watched.watching = False
        _networks.remove(watched)
        black_hole.close()
        for connection in accepted:
            connection.close()


@pytest.mark.parametrize("output", ["url", "base64"])
async def test_a_generation_reaches_no_host_but_the_inference_endpoint(
    make_provider: Callable[..., RunwareProvider], runware: FakeRunwareAPI, network: Network, output: str
) -> None:
    port = runware.http_url.split(":")[2].split("/")[0]
    provider = make_provider(
        RUNWARE_URL=f"ws://localhost:{port}/v1", RUNWARE_HTTP_URL=f"http://localhost:{port}/v1", RUNWARE_OUTPUT=output
    )
    started = time.perf_counter()
    result = await generate(provider, job(count=2))
    assert time.perf_counter() - started < 2, "a generation stalled on a host other than the endpoint"
    assert len(result.images) == 2
    assert network.lookups == []
    assert {tuple(address)[:2] for address in network.connects} == {("127.0.0.1", int(port))}


async def test_the_network_watch_sees_the_sdk_asking_its_schema_registry(
    network: Network, runware: FakeRunwareAPI
) -> None:
    """The watch above has teeth: without an explicit ``taskType`` the SDK asks schemas.runware.ai, stalls on
    the black hole until its registry timeout (3 s), then falls back to the registry it bundles."""
    from runware import Runware

    async with Runware(api_key=DEFAULT_KEY, ws_base_url=runware.ws_url, max_reconnect_attempts=0) as client:
        started = time.perf_counter()
        items = await client.run(
            {"model": "runware:100@1", "positivePrompt": PROMPT, "width": 256, "height": 256, "deliveryMethod": "sync"}
        )
    assert len(items) == 1
    assert time.perf_counter() - started > 2.5
    assert "schemas.runware.ai" in network.lookups
    assert network.black_hole_address in [tuple(address)[:2] for address in network.connects]
