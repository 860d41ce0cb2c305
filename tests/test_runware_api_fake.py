"""The loopback Runware API driven by the real ``runware-sdk`` client, over both of its transports."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aiohttp
import anyio
import pytest
import websockets
from PIL import Image
from runware import RunOptions, RuntimeDependencies, Runware, RunwareError
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import InvalidStatus

from tests.fakes.runware_api import (
    COST_PER_IMAGE,
    DEFAULT_KEY,
    DropMode,
    FakeRunwareAPI,
    http_status_for,
    render_image,
)

pytestmark = pytest.mark.anyio

TRANSPORTS = ["websocket", "rest"]
ClientFactory = Callable[..., Runware]


def task(**overrides: Any) -> dict[str, Any]:
    """An ``imageInference`` task; ``taskType`` is explicit so the SDK never looks the model up online."""
    return {
        "taskType": "imageInference",
        "deliveryMethod": "sync",
        "model": "runware:100@1",
        "positivePrompt": "a lighthouse on a cliff at dusk",
        "width": 256,
        "height": 256,
        "seed": 41,
        "outputType": "base64Data",
        "outputFormat": "PNG",
        "includeCost": True,
        **overrides,
    }


def png_data_uri(size: tuple[int, int] = (64, 48), image_format: str = "PNG", mode: str = "RGB") -> tuple[str, bytes]:
    buffer = io.BytesIO()
    Image.new(mode, size, (200, 30, 30) if mode == "RGB" else 255).save(buffer, format=image_format)
    data = buffer.getvalue()
    return f"data:image/{image_format.lower()};base64,{base64.b64encode(data).decode()}", data


def decoded(item: dict[str, Any]) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(item["imageBase64Data"])))


async def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(0.02)


async def failure(call: Any) -> RunwareError:
    with pytest.raises(RunwareError) as caught:
        await call
    return caught.value


@pytest.fixture
def runware() -> Iterator[FakeRunwareAPI]:
    with FakeRunwareAPI() as server:
        yield server


@pytest.fixture
async def make_client(runware: FakeRunwareAPI) -> AsyncIterator[ClientFactory]:
    """SDK clients aimed at the fake; no SDK retries unless a test asks, and no 1 MiB WebSocket message cap."""
    made: list[Runware] = []

    async def connect(url: str) -> ClientConnection:
        return await websockets.connect(url, max_size=None, proxy=None)

    def make(transport: str = "websocket", **config: Any) -> Runware:
        settings: dict[str, Any] = {
            "api_key": DEFAULT_KEY,
            "transport": transport,
            "ws_base_url": runware.ws_url,
            "http_base_url": runware.http_url,
            "max_retries": 0,
            "dependencies": RuntimeDependencies(ws_connect=connect),
            **config,
        }
        made.append(Runware(**settings))
        return made[-1]

    yield make
    for client in made:
        await client.close()


# -- generation -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("delivery", ["sync", "async"])
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_generates_images_with_seed_and_cost(
    make_client: ClientFactory, runware: FakeRunwareAPI, transport: str, delivery: str
) -> None:
    client = make_client(transport)
    results = await client.run(task(numberResults=2, width=320, height=192, deliveryMethod=delivery))

    assert [item["seed"] for item in results] == [41, 42]
    assert [item["cost"] for item in results] == [COST_PER_IMAGE, COST_PER_IMAGE]
    assert all(decoded(item).size == (320, 192) and decoded(item).format == "PNG" for item in results)
    (accepted,) = runware.tasks.values()
    assert accepted.transport == transport and accepted.status == "success" and accepted.delivered
    assert accepted.task["deliveryMethod"] == delivery
    assert (runware.polls > 0) is (delivery == "async")
    assert (runware.connections, runware.http_requests > 0) == ((1, False) if transport == "websocket" else (0, True))


@pytest.mark.parametrize(("output_type", "output_format"), [("dataURI", "WEBP"), ("URL", "JPG"), ("base64Data", "PNG")])
async def test_output_types_and_formats(
    make_client: ClientFactory, runware: FakeRunwareAPI, output_type: str, output_format: str
) -> None:
    client = make_client()
    (item,) = await client.run(task(outputType=output_type, outputFormat=output_format))
    mime = {"WEBP": "image/webp", "JPG": "image/jpeg", "PNG": "image/png"}[output_format]
    if output_type == "dataURI":
        header, encoded = item["imageDataURI"].split(",", 1)
        assert header == f"data:{mime};base64"
        data = base64.b64decode(encoded)
    elif output_type == "URL":
        assert item["imageURL"].startswith("http://127.0.0.1:")
        async with aiohttp.ClientSession() as session, session.get(item["imageURL"]) as response:
            assert response.content_type == mime
            data = await response.read()
    else:
        data = base64.b64decode(item["imageBase64Data"])
    assert Image.open(io.BytesIO(data)).format == {"JPG": "JPEG"}.get(output_format, output_format)


async def test_image_urls_are_served_concurrently(make_client: ClientFactory, runware: FakeRunwareAPI) -> None:
    runware.download_delay_s = 0.3
    results = await make_client().run(task(outputType="URL", numberResults=4))

    async with aiohttp.ClientSession() as session:

        async def fetch(url: str) -> bytes:
            async with session.get(url) as response:
                return await response.read()

        started = time.perf_counter()
        images = await asyncio.gather(*(fetch(item["imageURL"]) for item in results))
    assert time.perf_counter() - started < 1.0
    assert runware.max_downloads_in_flight == 4 and runware.image_downloads == 4
    assert len(set(images)) == 4


async def test_images_are_photo_like_by_default_and_deterministic_per_seed(
    make_client: ClientFactory, runware: FakeRunwareAPI
) -> None:
    client = make_client()
    (first,) = await client.run(task(seed=7))
    (again,) = await client.run(task(seed=7))
    (other,) = await client.run(task(seed=8))
    assert first["imageBase64Data"] == again["imageBase64Data"] != other["imageBase64Data"]
    assert decoded(first).convert("RGB").getcolors(1000) is None  # more than 1000 colours

    runware.image_style = "flat"
    (flat,) = await client.run(task(seed=7))
    assert len(decoded(flat).convert("RGB").getcolors(1) or []) == 1
    assert render_image(64, 64, 3, "photo", "PNG") == render_image(64, 64, 3, "photo", "PNG")


async def test_reported_seeds_and_the_nsfw_flag(make_client: ClientFactory, runware: FakeRunwareAPI) -> None:
    runware.seed_override = 777
    runware.flag_nsfw = True
    checked = await make_client().run(task(numberResults=2, safety={"checkContent": True}))
    (unchecked,) = await make_client().run(task())
    assert [(item["seed"], item["NSFWContent"]) for item in checked] == [(777, True), (778, True)]
    assert "NSFWContent" not in unchecked


async def test_the_raw_websocket_protocol(runware: FakeRunwareAPI) -> None:
    """What the SDK sends, spelled out: authentication first, pings answered, errors routed by taskUUID."""
    async with websockets.connect(runware.ws_url, proxy=None) as ws:
        await ws.send(json.dumps([{"taskType": "ping", "ping": True, "taskUUID": "t0"}]))
        assert json.loads(await ws.recv())["errors"][0]["code"] == "missingApiKey"
        await ws.send(json.dumps([{"taskType": "authentication", "apiKey": DEFAULT_KEY}]))
        (auth,) = json.loads(await ws.recv())["data"]
        assert auth["taskType"] == "authentication" and auth["connectionSessionUUID"]
        await ws.send(json.dumps([{"taskType": "ping", "ping": True}]))
        assert json.loads(await ws.recv()) == {"data": [{"taskType": "ping", "pong": True}]}
        await ws.send(json.dumps([{"taskType": "getResponse", "taskUUID": "nope"}]))
        (error,) = json.loads(await ws.recv())["errors"]
        assert (error["code"], error["taskUUID"]) == ("taskFailedOrNotFound", "nope")
    assert runware.pings == 1 and runware.polls == 1


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_sixteen_concurrent_calls(make_client: ClientFactory, runware: FakeRunwareAPI, transport: str) -> None:
    runware.delay_s = 0.3
    client = make_client(transport)
    results = await asyncio.gather(*(client.run(task(seed=seed)) for seed in range(100, 116)))

    assert runware.max_in_flight == 16
    assert [result[0]["seed"] for result in results] == list(range(100, 116))
    if transport == "websocket":
        assert runware.connections == 1 and len(runware.auth_requests) == 1
    else:
        assert runware.http_requests == 16


async def test_a_large_result_needs_the_message_cap_lifted(make_client: ClientFactory) -> None:
    """A 1024x1024 PNG as base64 is over 1 MiB: over the SDK's own WebSocket connect the socket closes on it."""
    big = task(width=1024, height=1024)
    error = await failure(make_client(dependencies=None, max_reconnect_attempts=0).run(big))
    assert error.code == "connection"
    (item,) = await make_client().run(big)
    assert len(item["imageBase64Data"]) > 2**20


# -- connection faults ------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["abort", "close"])
async def test_a_sync_task_fails_fast_on_a_drop_and_the_next_call_reconnects(
    make_client: ClientFactory, runware: FakeRunwareAPI, mode: DropMode
) -> None:
    client = make_client(max_reconnect_attempts=0)
    await client.run(task())
    runware.drop_mode = mode
    runware.drop_next = 1
    started = time.perf_counter()
    error = await failure(client.run(task(seed=5)))
    assert time.perf_counter() - started < 1.0
    assert error.code == "connection" and error.retryable

    assert len(await client.run(task())) == 1
    assert runware.connections == 2
    # The dropped task ran to the end on the server; its images never reached the client.
    await eventually(lambda: [t.task["seed"] for t in runware.abandoned()] == [5])


async def test_the_sdk_reconnects_by_itself_and_fails_a_sync_task_that_may_have_run(
    make_client: ClientFactory, runware: FakeRunwareAPI
) -> None:
    client = make_client(retry_delay=20)
    await client.run(task())
    runware.drop_next = 1
    error = await failure(client.run(task()))
    assert error.code == "connection" and "may have been processed" in error.message
    assert runware.connections == 2
    first, resumed = runware.auth_requests
    assert "connectionSessionUUID" not in first and resumed["connectionSessionUUID"]


async def test_an_async_task_is_collected_after_a_reconnect(
    make_client: ClientFactory, runware: FakeRunwareAPI
) -> None:
    runware.delay_s = 0.5
    runware.drop_next = 1
    client = make_client(retry_delay=20)
    (item,) = await client.run(task(deliveryMethod="async"))

    assert item["seed"] == 41
    assert runware.connections == 2
    # Sent again after the reconnect, answered conflictTaskUUID (it is running), then polled to the end.
    assert len(runware.requests) == 2 and len(runware.tasks) == 1
    assert next(iter(runware.tasks.values())).delivered


async def test_a_rest_call_dropped_mid_task(make_client: ClientFactory, runware: FakeRunwareAPI) -> None:
    runware.drop_next = 1
    with pytest.raises(aiohttp.ClientConnectionError):
        await make_client("rest").run(task())
    # With SDK retries the task is sent again, and the server refuses the taskUUID it already has.
    runware.drop_next = 1
    error = await failure(make_client("rest", max_retries=1, retry_delay=10).run(task()))
    assert error.code == "validation" and error.status_code == 400
    assert runware.http_requests == 3
    assert [request["taskUUID"] for request in runware.requests][1:] == [runware.requests[1]["taskUUID"]] * 2


@pytest.mark.parametrize(
    ("transport", "delivery", "seen"),
    [("websocket", "async", True), ("rest", "sync", True), ("websocket", "sync", False)],
)
async def test_cancelling_by_event(
    make_client: ClientFactory, runware: FakeRunwareAPI, transport: str, delivery: str, seen: bool
) -> None:
    runware.delay_s = 1.0
    client = make_client(transport)
    cancel = asyncio.Event()
    asyncio.get_running_loop().call_later(0.3, cancel.set)
    started = time.perf_counter()
    error = await failure(client.run(task(deliveryMethod=delivery), RunOptions(cancel_event=cancel)))
    assert error.code == "aborted" and time.perf_counter() - started < 0.8

    (abandoned,) = runware.tasks.values()
    await eventually(lambda: abandoned.status == "success")
    await anyio.sleep(0.2)
    # The SDK only stops waiting: a sync result is still pushed to an open WebSocket.
    assert (runware.abandoned() == [abandoned]) is seen


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_rejected_key_fails_at_once(
    make_client: ClientFactory, runware: FakeRunwareAPI, transport: str
) -> None:
    runware.reject_key = True
    client = make_client(transport)
    error = await failure(client.run(task()))
    assert error.code == "auth" and not error.retryable
    assert "Invalid API key" in error.message
    await anyio.sleep(1.2)
    assert (runware.connections, runware.http_requests) == ((1, 0) if transport == "websocket" else (0, 1))
    assert runware.requests == []


async def test_an_unanswered_authentication_times_out_as_an_auth_error(
    make_client: ClientFactory, runware: FakeRunwareAPI
) -> None:
    runware.answer_auth = False
    error = await failure(make_client(auth_timeout=300).connect())
    assert error.code == "auth" and "timed out" in error.message


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_slow_answer_runs_into_the_call_timeout(
    make_client: ClientFactory, runware: FakeRunwareAPI, transport: str
) -> None:
    runware.delay_s = 2
    error = await failure(make_client(transport).run(task(), RunOptions(timeout=300)))
    assert error.code == "timeout" and error.retryable


@pytest.mark.parametrize("status", [401, 429, 503])
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_request_refused_with_an_http_status(
    make_client: ClientFactory, runware: FakeRunwareAPI, transport: str, status: int
) -> None:
    runware.refuse_status = status
    error = await failure(make_client(transport).run(task()))
    if transport == "websocket":
        assert error.code == "connection" and f"HTTP {status}" in error.message
        assert isinstance(error.__cause__, InvalidStatus) and error.__cause__.response.status_code == status
    else:
        assert error.status_code == status
        assert error.code == ("auth" if status == 401 else "unknown")


@pytest.mark.parametrize("compression", [True, False])
async def test_compression_is_negotiated_only_when_on(
    make_client: ClientFactory, runware: FakeRunwareAPI, compression: bool
) -> None:
    runware.compression = compression
    opened: list[ClientConnection] = []

    async def connect(url: str) -> ClientConnection:
        opened.append(await websockets.connect(url, max_size=None, proxy=None))
        return opened[-1]

    await make_client(dependencies=RuntimeDependencies(ws_connect=connect)).run(task())
    assert opened[0].response is not None
    extensions = opened[0].response.headers.get("Sec-WebSocket-Extensions", "")
    assert ("permessage-deflate" in extensions) is compression


# -- task errors ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "sdk_code", "retryable"),
    [
        ("insufficientCredits", "quota", False),
        ("rateLimitExceeded", "rateLimit", True),
        ("nsfwContentDetected", "safety", False),
        ("internalServerError", "serverError", True),
        ("inferenceError", "provider", True),
        ("timeoutProvider", "unknown", False),
    ],
)
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_task_errors_reach_the_sdk_by_code(
    make_client: ClientFactory, runware: FakeRunwareAPI, transport: str, code: str, sdk_code: str, retryable: bool
) -> None:
    runware.task_error = {"code": code, "message": f"Runware says {code}."}
    if code == "insufficientCredits":
        runware.insufficient_credits()
    error = await failure(make_client(transport).run(task()))
    assert (error.code, error.retryable) == (sdk_code, retryable)
    assert error.task_uuid == next(iter(runware.tasks))
    if transport == "rest":
        assert error.status_code == http_status_for(code)


async def test_an_async_task_error_comes_with_the_poll(make_client: ClientFactory, runware: FakeRunwareAPI) -> None:
    runware.insufficient_credits()
    error = await failure(make_client().run(task(deliveryMethod="async")))
    assert error.code == "quota" and "Insufficient credits" in error.message
    assert runware.polls >= 1


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_an_unknown_model_is_an_invalid_model_parameter(
    make_client: ClientFactory, runware: FakeRunwareAPI, transport: str
) -> None:
    error = await failure(make_client(transport).run(task(model="runware:999@9")))
    assert (error.code, error.parameter) == ("validation", "model")
    assert "valid AIR identifier" in error.message
    assert runware.tasks == {} and len(runware.requests) == 1


@pytest.mark.parametrize(
    ("overrides", "parameter"),
    [
        ({"positivePrompt": "x"}, "positivePrompt"),
        ({"height": 752}, "height"),
        ({"steps": 0}, "steps"),
        ({"strength": 1.5}, "strength"),
        ({"outputType": "PDF"}, "outputType"),
        ({"lora": [{"model": "runware:101@1", "weight": 1}]}, "lora"),
        ({"seedImage": "data:image/gif;base64,R0lGODlhAQABAAAAACw="}, "seedImage"),
        ({"inputs": {"referenceImages": ["8c2b2f4e-0000-4000-8000-000000000000"]}}, "inputs.referenceImages[0]"),
        ({"seedImage": png_data_uri()[0], "maskImage": png_data_uri()[0]}, "maskImage"),  # colour: no mask
        ({"seedImage": png_data_uri()[0], "maskImage": png_data_uri((32, 32), mode="L")[0]}, "maskImage"),  # size
        ({"maskImage": png_data_uri(mode="L")[0]}, "seedImage"),
    ],
)
async def test_invalid_parameters_are_named(
    make_client: ClientFactory, overrides: dict[str, Any], parameter: str
) -> None:
    error = await failure(make_client().run(task(**overrides)))
    assert (error.code, error.parameter) == ("validation", parameter)


# -- inputs, uploads, search ---------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_an_uploaded_image_is_referred_to_by_uuid(
    make_client: ClientFactory, runware: FakeRunwareAPI, transport: str
) -> None:
    client = make_client(transport)
    uri, data = png_data_uri()
    mask_uri, mask_data = png_data_uri(mode="L")
    (uploaded,) = await client.image_upload({"image": uri})
    (stored,) = await client.media_storage({"operation": "upload", "media": mask_uri})
    assert uploaded["imageURL"].endswith(f"{uploaded['imageUUID']}.png")
    assert stored["operation"] == "upload" and stored["mediaURL"].endswith(f"{stored['mediaUUID']}.png")
    assert [upload.data for upload in runware.uploads] == [data, mask_data]

    await client.run(task(seedImage=uploaded["imageUUID"], maskImage=stored["mediaURL"], strength=0.7))
    (accepted,) = runware.tasks.values()
    seed, mask = accepted.images
    assert (seed.field, seed.source, seed.data) == ("seedImage", "uuid", data)
    assert (mask.field, mask.source, mask.dimensions) == ("maskImage", "url", (64, 48))
    assert accepted.task["strength"] == 0.7


async def test_input_images_and_loras_are_decoded_and_recorded(
    make_client: ClientFactory, runware: FakeRunwareAPI
) -> None:
    png_uri, png = png_data_uri((80, 80))
    _, jpeg = png_data_uri((40, 30), "JPEG")
    (generated,) = await make_client().run(task())
    kontext = task(
        model="runware:106@1",
        width=1392,
        height=752,
        inputs={"referenceImages": [png_uri, base64.b64encode(jpeg).decode(), generated["imageUUID"]]},
        lora=[{"model": "civitai:180891@838667", "weight": 0.8}],
    )
    await make_client().run(kontext)

    received = runware.tasks[next(reversed(runware.tasks))].images
    assert [(image.field, image.source, image.format) for image in received] == [
        ("inputs.referenceImages[0]", "dataURI", "PNG"),
        ("inputs.referenceImages[1]", "base64", "JPEG"),
        ("inputs.referenceImages[2]", "uuid", "PNG"),
    ]
    assert received[0].nbytes == len(png) and received[0].media_type == "image/png"
    assert received[1].data == jpeg and received[1].dimensions == (40, 30)
    assert received[2].data == base64.b64decode(generated["imageBase64Data"])
    assert runware.requests[-1]["lora"] == [{"model": "civitai:180891@838667", "weight": 0.8}]


@pytest.mark.parametrize(
    ("query", "airs", "total"),
    [
        ({"search": "kontext"}, ["runware:106@1", "bfl:3@1"], 2),
        ({"category": "lora"}, ["civitai:58390@62833", "civitai:180891@838667"], 2),
        ({"search": "flux", "architecture": "flux1s"}, ["runware:100@1"], 1),
        ({"search": "photorealistic", "limit": 1, "offset": 1}, ["rundiffusion:110@101"], 3),
    ],
)
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_model_search_filters_the_catalog(
    make_client: ClientFactory, transport: str, query: dict[str, Any], airs: list[str], total: int
) -> None:
    (found,) = await make_client(transport).model_search(query)  # type: ignore[arg-type]
    assert [model["air"] for model in found["results"]] == airs
    assert found["totalResults"] == total
    first = found["results"][0]
    assert {"name", "air", "category", "architecture", "version", "tags", "heroImage"} <= set(first)
    assert ("defaultSteps" in first) is (first["category"] == "checkpoint")


async def test_model_search_rejects_a_bad_limit(make_client: ClientFactory) -> None:
    error = await failure(make_client().model_search({"limit": 0}))
    assert (error.code, error.parameter) == ("validation", "limit")
