"""The few things the Runware provider relies on in ``runware-sdk`` (and the websockets and aiohttp it brings),
each failing with a message that names what changed. A new SDK release that breaks one of them fails here
first, with the name of the thing to adapt in ``imagegen_mcp.providers.runware``.

The behaviours are checked against the loopback Runware API, over both transports.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import socket
import typing
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest
import runware
from runware import RunOptions, RuntimeDependencies, Runware, RunwareError
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from tests.fakes.runware_api import DEFAULT_KEY, FakeRunwareAPI

pytestmark = pytest.mark.anyio

ADAPT = "adapt _Client in imagegen_mcp.providers.runware"


def task(**overrides: object) -> dict[str, object]:
    """A task as the provider sends it (``RunwareProvider._task``)."""
    return {
        "taskType": "imageInference",
        "taskUUID": "2d0c9a4e-5f8b-4f63-9d1e-3a6b7c8d9e0f",
        "deliveryMethod": "sync",
        "model": "runware:100@1",
        "positivePrompt": "a lighthouse",
        "width": 256,
        "height": 256,
        "numberResults": 1,
        "seed": 7,
        "outputType": "base64Data",
        "outputFormat": "PNG",
        "includeCost": True,
        **overrides,
    }


@pytest.fixture
async def make_client(runware: FakeRunwareAPI) -> AsyncIterator[Callable[..., Runware]]:
    """Clients configured as the provider configures them (no retries, no background reconnects)."""
    made: list[Runware] = []

    def make(transport: str, **overrides: object) -> Runware:
        options: dict[str, object] = {
            "transport": transport,
            "ws_base_url": runware.ws_url,
            "http_base_url": runware.http_url,
            "max_retries": 0,
            "max_reconnect_attempts": 0,
        }
        made.append(Runware(api_key=DEFAULT_KEY, **(options | overrides)))
        return made[-1]

    yield make
    for client in made:
        await client.close()


# -- names and shapes --------------------------------------------------------------------------------------


def test_the_client_takes_the_settings_the_provider_passes() -> None:
    fields = {field.name for field in dataclasses.fields(runware.SDKConfig) if field.init}
    for name in (
        "transport",
        "ws_base_url",
        "http_base_url",
        "max_retries",
        "max_reconnect_attempts",
        "auth_timeout",
        "user_agent_prefix",
        "dependencies",
    ):
        assert name in fields, f"runware.Runware no longer takes {name}=: {ADAPT}"
    assert "api_key" in inspect.signature(Runware).parameters, f"runware.Runware no longer takes api_key=: {ADAPT}"
    assert set(typing.get_args(runware.TransportType)) == {"websocket", "rest"}, "the SDK's transports changed"


def test_the_client_has_connect_close_run_and_is_connected() -> None:
    for name in ("connect", "close", "run"):
        assert inspect.iscoroutinefunction(getattr(Runware, name, None)), f"Runware.{name} is gone or not async"
    assert isinstance(inspect.getattr_static(Runware, "is_connected"), property), "Runware.is_connected is gone"


@pytest.mark.parametrize(
    ("options", "names"),
    [(RunOptions, ("cancel_event",)), (RuntimeDependencies, ("session", "ws_connect"))],
)
def test_the_option_types_have_the_fields_the_provider_sets(options: type, names: tuple[str, ...]) -> None:
    fields = {field.name for field in dataclasses.fields(options)}
    for name in names:
        assert name in fields, f"runware.{options.__name__} has no field {name}: {ADAPT}"


def test_errors_carry_the_attributes_the_mapping_reads() -> None:
    error = runware.create_runware_error("invalidWidth", "Invalid value for 'width'.", parameter="width")
    assert isinstance(error, RunwareError)
    for name in ("code", "message", "parameter", "status_code", "task_uuid", "retry_after"):
        assert hasattr(error, name), f"RunwareError has no {name}: adapt RunwareProvider._runware_error"


def test_the_error_classes_are_the_ones_the_mapping_knows() -> None:
    mapped = {"auth", "quota", "rateLimit", "safety", "timeout", "validation", "notFound", "aborted"}
    mapped |= {"connection", "provider", "serverError", "unknown"}
    assert set(typing.get_args(runware.ErrorCode)) == mapped, "the SDK's error classes changed: adapt _runware_error"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("invalidApiKey", "auth"),
        ("authFailed", "auth"),
        ("insufficientCredits", "quota"),
        ("rateLimitExceeded", "rateLimit"),
        ("nsfwContentDetected", "safety"),
        ("invalidModel", "validation"),
        ("invalidPositivePrompt", "validation"),
        ("connectionFailed", "connection"),
        ("reconnectionFailed", "connection"),
        ("internalServerError", "serverError"),
        ("modelUnavailable", "provider"),
        ("timeoutProvider", "unknown"),
    ],
)
def test_runware_codes_fall_into_the_classes_the_mapping_expects(raw: str, expected: str) -> None:
    code = runware.create_runware_error(raw, "message").code
    assert code == expected, f"the SDK now puts Runware's {raw} into {code!r}, not {expected!r}: adapt _runware_error"


def test_an_unknown_model_answer_keeps_its_parameter() -> None:
    error = runware.parse_api_error({"errors": [{"code": "invalidModel", "message": "no", "parameter": "model"}]})
    assert (error.code, error.parameter) == ("validation", "model"), "a retired model would no longer be recognised"


def test_the_result_shape_names_the_image_seed_and_cost() -> None:
    keys = set(typing.get_type_hints(runware.ImageInferenceResult))
    for name in ("imageURL", "imageBase64Data", "seed", "cost"):
        assert name in keys, f"ImageInferenceResult has no {name}: adapt RunwareProvider._image"
    assert isinstance(runware.SDK_VERSION, str), "runware.SDK_VERSION is gone (it is in our User-Agent)"


def test_websockets_connect_takes_what_the_provider_passes() -> None:
    parameters = inspect.signature(connect).parameters
    for name in ("max_size", "compression", "open_timeout", "additional_headers", "logger"):
        assert name in parameters, f"websockets' connect no longer takes {name}=: adapt _Client._ws_connect"
    assert "response" in inspect.signature(InvalidStatus).parameters, "InvalidStatus no longer carries the response"


# -- behaviours --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["websocket", "rest"])
async def test_the_cancel_event_ends_a_call_as_aborted(
    make_client: Callable[..., Runware], runware: FakeRunwareAPI, transport: str
) -> None:
    runware.delay_s = 5
    client = make_client(transport)
    cancel = asyncio.Event()
    asyncio.get_running_loop().call_later(0.2, cancel.set)
    with pytest.raises(RunwareError) as caught:
        await asyncio.wait_for(client.run(task(), RunOptions(cancel_event=cancel)), 2)
    assert caught.value.code == "aborted", "the cancel event no longer ends a call: adapt run_task"


async def test_the_injected_websocket_connect_is_used(
    make_client: Callable[..., Runware], runware: FakeRunwareAPI
) -> None:
    opened: list[str] = []

    async def ws_connect(url: str) -> ClientConnection:
        opened.append(url)
        return await connect(url, max_size=2**26)

    client = make_client("websocket", dependencies=RuntimeDependencies(ws_connect=ws_connect))
    runware.refuse_status = 503
    with pytest.raises(RunwareError) as caught:
        await client.connect()
    assert opened == [runware.ws_url], "the SDK no longer opens the WebSocket through dependencies.ws_connect"
    assert caught.value.code == "connection", "a refused handshake is no longer a connection error"


async def test_after_a_drop_the_client_is_disconnected_and_connect_reopens_it(
    make_client: Callable[..., Runware], runware: FakeRunwareAPI
) -> None:
    client = make_client("websocket")
    await client.connect()
    runware.drop_next = 1
    with pytest.raises(RunwareError) as caught:
        await asyncio.wait_for(client.run(task()), 2)
    assert caught.value.code == "connection", "a drop no longer fails the task at once as a connection error"
    assert not client.is_connected, (
        "Runware.is_connected stays true after a drop: RunwareProvider._connect relies on it"
    )
    await client.connect()
    assert len(await client.run(task(taskUUID="8f14e45f-ceea-467f-9d3b-1c2a3b4c5d6e"))) == 1
    assert runware.connections == 2


async def test_a_rest_connection_failure_is_aiohttps_own_error(make_client: Callable[..., Runware]) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = make_client("rest", http_base_url=f"http://127.0.0.1:{port}/v1")
    with pytest.raises(aiohttp.ClientError):  # the provider maps these (RunwareProvider._error)
        await client.run(task())
