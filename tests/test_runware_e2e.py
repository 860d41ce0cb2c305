"""Runware end to end: a real MCP client, the server in memory, the real ``runware-sdk`` and the loopback Runware
API, over both of the SDK's transports (``RUNWARE_API_KEY`` is a dummy value, ``RUNWARE_URL`` and
``RUNWARE_HTTP_URL`` point at the loopback API)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
from mcp import MCPError
from mcp.client import Client
from mcp_types import CallToolResult, TextResourceContents

from imagegen_mcp.catalog import ProviderSpec
from imagegen_mcp.config import Settings
from imagegen_mcp.providers.base import MAX_SEED
from imagegen_mcp.providers.runware import RunwareProvider
from imagegen_mcp.server.app import build_server
from tests.e2e import assert_image_result, error_of, text_of
from tests.fakes.palette import PaletteProvider
from tests.fakes.runware_api import COST_PER_IMAGE, DEFAULT_KEY, FakeRunwareAPI

pytestmark = pytest.mark.anyio

RUNWARE_ONLY: list[ProviderSpec] = [RunwareProvider]
WITH_FALLBACK: list[ProviderSpec] = [RunwareProvider, PaletteProvider]


@pytest.fixture(params=["websocket", "rest"])
def transport(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


@pytest.fixture
def settings(
    runware: FakeRunwareAPI, make_settings: Callable[..., Settings], transport: str
) -> Callable[..., Settings]:
    def make(**environ: str) -> Settings:
        return make_settings(
            **{
                "RUNWARE_API_KEY": DEFAULT_KEY,
                "RUNWARE_URL": runware.ws_url,
                "RUNWARE_HTTP_URL": runware.http_url,
                "RUNWARE_TRANSPORT": transport,
                **environ,
            }
        )

    return make


def saved_pngs(settings: Settings) -> list[Path]:
    return sorted(settings.output_dir.rglob("*.png"))


def connections(runware: FakeRunwareAPI, transport: str) -> int:
    return runware.connections if transport == "websocket" else runware.http_connections


async def test_generate_image_returns_images_with_preview_link_seed_and_cost(
    settings: Callable[..., Settings], runware: FakeRunwareAPI, transport: str
) -> None:
    messages: list[str] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        messages.append(message or "")

    async with Client(build_server(settings(), RUNWARE_ONLY)) as client:
        result = await client.call_tool(
            "generate_image",
            {"prompt": "a red fox in the snow", "model": "runware:juggernaut_pro", "count": 2, "seed": 10},
            progress_callback=on_progress,
        )
        unseeded = await client.call_tool("generate_image", {"prompt": "a red fox in the snow"})

    images = assert_image_result(result, count=2)
    structured = result.structured_content
    assert structured is not None
    assert (structured["provider"], structured["model"]) == ("runware", "runware:juggernaut_pro")
    assert [image["seed"] for image in images] == [10, 11]
    assert all((image["width"], image["height"]) == (1024, 1024) for image in images)
    assert structured["cost_usd"] == pytest.approx(2 * COST_PER_IMAGE)
    assert (structured["parameters"]["steps"], structured["parameters"]["guidance_scale"]) == (20, 7.5)
    assert structured["fell_back"] is False
    for step in ("connecting", "submitted", "received"):
        assert any(message.startswith(step) for message in messages), messages

    # What Runware received: the catalog's AIR id, steps and CFG, one task per image with the seed it reports.
    first, second, third = runware.requests
    assert (first["model"], first["steps"], first["CFGScale"]) == ("rundiffusion:130@100", 20, 7.5)
    assert [(task["numberResults"], task["seed"]) for task in (first, second)] == [(1, 10), (1, 11)]
    (image,) = assert_image_result(unseeded, count=1)
    assert third["seed"] == image["seed"] == (unseeded.structured_content or {})["parameters"]["seed"]
    assert connections(runware, transport) <= 2


async def test_two_images_from_the_largest_seed_report_seeds_that_reproduce_each_alone(
    settings: Callable[..., Settings], runware: FakeRunwareAPI
) -> None:
    async with Client(build_server(settings(), RUNWARE_ONLY)) as client:
        pair = assert_image_result(
            await client.call_tool("generate_image", {"prompt": "a fox", "count": 2, "seed": MAX_SEED}), count=2
        )
        seeds = [image["seed"] for image in pair]
        alone = [
            assert_image_result(await client.call_tool("generate_image", {"prompt": "a fox", "seed": seed}), count=1)
            for seed in seeds
        ]
    assert seeds == [MAX_SEED, 0]
    assert [image["seed"] for (image,) in alone] == seeds
    # Same seed, same image: Runware got the same seed for each image alone as within the pair.
    assert [task["seed"] for task in runware.requests] == [MAX_SEED, MAX_SEED + 1, MAX_SEED, MAX_SEED + 1]


async def test_sixteen_concurrent_calls_are_served_over_one_connection(
    settings: Callable[..., Settings], runware: FakeRunwareAPI, transport: str
) -> None:
    runware.delay_s = 0.3
    results: list[CallToolResult] = []

    async with Client(build_server(settings(), RUNWARE_ONLY)) as client:

        async def call(index: int) -> None:
            arguments = {"prompt": f"tile number {index}", "width": 256, "height": 256, "seed": index + 1}
            results.append(await client.call_tool("generate_image", arguments))

        async with anyio.create_task_group() as group:
            for index in range(16):
                group.start_soon(call, index)

    assert len(results) == 16
    for result in results:
        assert_image_result(result, count=1)
    assert runware.max_in_flight == 16
    assert sorted(request["seed"] for request in runware.requests) == list(range(1, 17))
    if transport == "websocket":
        assert runware.connections == 1
    else:  # one pool of HTTP/1.1 connections, one call at a time on each
        assert runware.http_connections <= 16


async def test_a_dropped_connection_is_recovered_on_the_next_call(
    settings: Callable[..., Settings], runware: FakeRunwareAPI, transport: str
) -> None:
    async with Client(build_server(settings(IMAGEGEN_FALLBACK="strict"), RUNWARE_ONLY)) as client:
        assert_image_result(await client.call_tool("generate_image", {"prompt": "before"}), count=1)
        runware.drop_next = 1
        error = error_of(await client.call_tool("generate_image", {"prompt": "during"}))
        after = await client.call_tool("generate_image", {"prompt": "after"})
    assert error["code"] == "provider_error" and error["retryable"] is True
    assert_image_result(after, count=1)
    assert connections(runware, transport) == 2


async def test_a_rejected_key_falls_back_in_auto_mode_and_the_trace_shows_it(
    settings: Callable[..., Settings], runware: FakeRunwareAPI
) -> None:
    runware.reject_key = True
    async with Client(build_server(settings(), WITH_FALLBACK)) as client:
        result = await client.call_tool("generate_image", {"prompt": "a red fox"})
    assert_image_result(result, count=1)
    structured = result.structured_content
    assert structured is not None
    assert structured["fell_back"] is True
    assert structured["model"] == "palette:solid_red"
    rejected, served = structured["attempts"]
    assert (rejected["provider"], rejected["outcome"], rejected["code"]) == (
        "runware",
        "failed",
        "authentication_failed",
    )
    assert "Invalid API key" in rejected["reason"]
    assert (served["provider"], served["outcome"]) == ("palette", "succeeded")
    assert "runware" in text_of(result)
    assert len(runware.auth_requests) + runware.http_requests == 1  # the key was tried once, never again


async def test_a_rejected_key_in_strict_mode_does_not_fall_back(
    settings: Callable[..., Settings], runware: FakeRunwareAPI
) -> None:
    runware.reject_key = True
    async with Client(build_server(settings(), WITH_FALLBACK)) as client:
        result = await client.call_tool("generate_image", {"prompt": "a red fox", "fallback": "strict"})
    error = error_of(result)
    assert error["code"] == "authentication_failed"
    assert [attempt["provider"] for attempt in error["attempts"]] == ["runware"]
    assert any("RUNWARE_API_KEY" in step for step in error["remediation"])
    assert DEFAULT_KEY not in text_of(result) and DEFAULT_KEY not in str(error)


async def test_a_retired_air_id_is_model_retired_naming_the_fix_and_auto_mode_falls_back(
    settings: Callable[..., Settings], runware: FakeRunwareAPI
) -> None:
    retired = settings(IMAGEGEN_MODEL_IDS="runware:juggernaut_pro=rundiffusion:130@99")
    async with Client(build_server(retired, WITH_FALLBACK)) as client:
        strict = await client.call_tool("generate_image", {"prompt": "a red fox", "fallback": "strict"})
        auto = await client.call_tool("generate_image", {"prompt": "a red fox"})
    error = error_of(strict)
    assert error["code"] == "model_retired"
    assert "'rundiffusion:130@99'" in error["message"]
    assert any('IMAGEGEN_MODEL_IDS="runware:juggernaut_pro=<current id>"' in step for step in error["remediation"])

    assert_image_result(auto, count=1)
    structured = auto.structured_content
    assert structured is not None
    assert structured["fell_back"] is True
    retired_attempt, served = structured["attempts"]
    assert (retired_attempt["provider"], retired_attempt["code"]) == ("runware", "model_retired")
    assert "rundiffusion:130@99" in retired_attempt["reason"]
    assert served["provider"] == "palette"
    assert [task["model"] for task in runware.requests] == ["rundiffusion:130@99", "rundiffusion:130@99"]


async def test_no_answer_in_time_is_a_provider_timeout_and_the_connection_stays_usable(
    settings: Callable[..., Settings], runware: FakeRunwareAPI, transport: str
) -> None:
    runware.delay_s = 3
    served = settings(IMAGEGEN_TIMEOUT_S="1", IMAGEGEN_FALLBACK="strict")
    async with Client(build_server(served, RUNWARE_ONLY)) as client:
        started = time.perf_counter()
        error = error_of(await client.call_tool("generate_image", {"prompt": "slow"}))
        assert time.perf_counter() - started < 3
        runware.delay_s = 0
        after = await client.call_tool("generate_image", {"prompt": "fast"})
    assert error["code"] == "provider_timeout" and error["retryable"] is True
    assert_image_result(after, count=1)
    assert len(saved_pngs(served)) == 1
    if transport == "websocket":
        assert runware.connections == 1


async def test_a_call_the_client_gives_up_on_is_abandoned_nothing_is_saved_and_the_connection_serves_the_next(
    settings: Callable[..., Settings], runware: FakeRunwareAPI, transport: str
) -> None:
    served = settings()
    runware.delay_s = 1.0
    async with Client(build_server(served, RUNWARE_ONLY)) as client:
        with pytest.raises(MCPError, match="Timed out"):
            await client.call_tool("generate_image", {"prompt": "slow"}, read_timeout_seconds=0.3)
        runware.delay_s = 0
        assert_image_result(await client.call_tool("generate_image", {"prompt": "fast"}), count=1)
        # Runware finishes the abandoned task late; its answer is dropped and nothing is saved for it.
        with anyio.fail_after(3):
            while runware.in_flight:
                await anyio.sleep(0.02)
        assert_image_result(await client.call_tool("generate_image", {"prompt": "again"}), count=1)
        recent = (await client.read_resource("imagegen://generations/recent")).contents[0]
    assert isinstance(recent, TextResourceContents)
    assert [generation["parameters"]["seed"] for generation in json.loads(recent.text)] == [
        request["seed"] for request in reversed(runware.requests[1:])
    ]
    assert len(saved_pngs(served)) == 2
    given_up = runware.tasks[runware.requests[0]["taskUUID"]]
    assert given_up.status == "success"
    if transport == "websocket":
        assert runware.connections == 1
    else:
        assert runware.abandoned() == [given_up]


async def test_a_parameter_runware_rejects_is_invalid_request_with_its_message_and_no_fallback(
    settings: Callable[..., Settings],
) -> None:
    async with Client(build_server(settings(), WITH_FALLBACK)) as client:
        result = await client.call_tool("generate_image", {"prompt": "a " * 1600})
    error = error_of(result)
    assert error["code"] == "invalid_request"
    assert "The prompt must have between 2 and 3000 characters" in error["message"]
    assert [attempt["provider"] for attempt in error["attempts"]] == ["runware"]


async def test_insufficient_credits_is_a_provider_error_with_remediation(
    settings: Callable[..., Settings], runware: FakeRunwareAPI
) -> None:
    runware.insufficient_credits()
    async with Client(build_server(settings(), WITH_FALLBACK)) as client:
        result = await client.call_tool("generate_image", {"prompt": "a red fox"})
    error = error_of(result)
    assert error["code"] == "provider_error" and error["retryable"] is False
    assert "Insufficient credits" in error["message"]
    assert any("https://my.runware.ai/wallet" in step for step in error["remediation"])
    assert [attempt["provider"] for attempt in error["attempts"]] == ["runware"]


@pytest.mark.parametrize("transport", ["websocket"])  # REST keeps no connection open between calls
async def test_server_shutdown_closes_the_connection(
    settings: Callable[..., Settings], runware: FakeRunwareAPI
) -> None:
    async with Client(build_server(settings(), RUNWARE_ONLY)) as client:
        assert_image_result(await client.call_tool("generate_image", {"prompt": "a red fox"}), count=1)
        assert runware.open_connections == 1
    with anyio.fail_after(3):
        while runware.open_connections:
            await anyio.sleep(0.02)
