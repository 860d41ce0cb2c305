"""Jobs and the history through a real MCP client: calls that outlive wait_s, get_job, cancel_job, the history
across restarts, concurrency, the daily budget, deletion and bad input."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.client import Client
from mcp_types import TextResourceContents

from imagegen_mcp.config import Settings
from imagegen_mcp.providers.base import GenerationRequest, Progress, ProviderResult
from imagegen_mcp.providers.runware import RunwareProvider
from imagegen_mcp.server.app import build_server
from imagegen_mcp.testing import FunctionModelConfig, FunctionProvider, draws_images, slow
from tests.e2e import (
    INITIALIZE,
    INITIALIZED,
    REPO,
    assert_image_result,
    clean_environ,
    error_of,
    exchange_over_stdio,
    text_of,
    write_palette_plugin,
)
from tests.fakes.runware_api import DEFAULT_KEY, FakeRunwareAPI
from tests.test_server_http import running_server

pytestmark = pytest.mark.anyio

COST = 0.0019


async def costly(request: GenerationRequest, model: FunctionModelConfig, progress: Progress) -> ProviderResult:
    drawn = await draws_images(request, model, progress)
    return ProviderResult(images=drawn.images, cost=COST * request.count)


def job_of(structured: dict[str, Any] | None) -> dict[str, Any]:
    assert structured is not None and set(structured) == {"job"}, structured
    job: dict[str, Any] = structured["job"]
    return job


async def test_a_call_past_wait_s_returns_a_handle_and_get_job_the_result(
    make_settings: Callable[..., Settings], runware: FakeRunwareAPI
) -> None:
    """Runware answering after 3 s, the server told to wait 1 s: a handle while the task still runs, then the
    result from get_job, one file, and the history lists it."""
    runware.delay_s = 3.0
    settings = make_settings(
        IMAGEGEN_WAIT_S="1",
        RUNWARE_API_KEY=DEFAULT_KEY,
        RUNWARE_URL=runware.ws_url,
        IMAGEGEN_DEFAULT_PROVIDER="runware",
    )
    async with Client(build_server(settings, [RunwareProvider])) as client:
        started = time.perf_counter()
        handle = await client.call_tool(
            "generate_image", {"prompt": "a lighthouse at dusk", "width": 256, "height": 256}
        )
        waited = time.perf_counter() - started
        assert not handle.is_error, text_of(handle)
        (task,) = runware.tasks.values()
        assert task.status == "processing"  # answered before Runware did
        job = job_of(handle.structured_content)
        assert job["status"] == "running" and job["uri"] == f"imagegen://jobs/{job['id']}"
        assert "Call get_job with job_id" in text_of(handle)
        state = (await client.read_resource(job["uri"])).contents[0]
        assert isinstance(state, TextResourceContents) and json.loads(state.text)["status"] == "running"
        result = await client.call_tool("get_job", {"job_id": job["id"], "wait_s": 10})
        again = await client.call_tool("get_job", {"job_id": job["id"], "wait_s": 0})
        found = await client.call_tool("search_images", {"query": "lighth"})
    assert waited >= 1.0  # it did wait wait_s before answering with the handle
    (image,) = assert_image_result(result, count=1)
    assert again.structured_content == result.structured_content
    assert len(list(settings.output_dir.iterdir())) == 1  # on disk once
    assert len(runware.tasks) == 1  # get_job waited for the same task; nothing ran twice
    (listed,) = (found.structured_content or {})["images"]
    assert listed["id"] == image["id"] and listed["job_id"] == job["id"] and listed["prompt"] == "a lighthouse at dusk"


async def test_wait_s_zero_returns_at_once_and_the_client_cancelling_the_call_cancels_the_job(
    make_settings: Callable[..., Settings],
) -> None:
    provider = FunctionProvider(slow(30.0), name="slowpoke")
    settings = make_settings()
    async with Client(build_server(settings, [provider])) as client:
        handle = await client.call_tool("generate_image", {"prompt": "x", "wait_s": 0})
        job = job_of(handle.structured_content)
        assert job["status"] in ("queued", "running")
        # A call whose client gives up: its job stops too.
        with anyio.move_on_after(0.5):
            await client.call_tool("generate_image", {"prompt": "y", "wait_s": 60})
        await anyio.sleep(0.3)
        jobs = sqlite3.connect(settings.db_path or "").execute("SELECT request, status FROM jobs").fetchall()
        cancelled = await client.call_tool("cancel_job", {"job_id": job["id"]})
        twice = await client.call_tool("cancel_job", {"job_id": job["id"]})
        final = await client.call_tool("get_job", {"job_id": job["id"]})
    statuses = {json.loads(request)["prompt"]: status for request, status in jobs}
    assert statuses["y"] == "cancelled"
    assert job_of(cancelled.structured_content)["status"] == "cancelled"
    assert job_of(twice.structured_content)["status"] == "cancelled"  # reported as such, not an error
    assert error_of(final)["code"] == "cancelled"
    assert list(settings.output_dir.glob("*")) == []


async def test_cancelling_a_finished_job_reports_it_finished(make_settings: Callable[..., Settings]) -> None:
    async with Client(build_server(make_settings(), [FunctionProvider(name="quick")])) as client:
        done = await client.call_tool("generate_image", {"prompt": "x", "width": 64, "height": 64})
        (image,) = assert_image_result(done, count=1)
        recent = (await client.read_resource("imagegen://generations/recent")).contents[0]
        assert isinstance(recent, TextResourceContents)
        (generation,) = json.loads(recent.text)
        job_id = (await client.call_tool("search_images", {})).structured_content or {}
        (listed,) = job_id["images"]
        cancelled = await client.call_tool("cancel_job", {"job_id": listed["job_id"]})
        one = (await client.read_resource(f"imagegen://generations/{listed['job_id']}")).contents[0]
    assert generation["images"][0]["id"] == image["id"]
    assert not cancelled.is_error and job_of(cancelled.structured_content)["status"] == "succeeded"
    assert isinstance(one, TextResourceContents) and json.loads(one.text)["images"][0]["id"] == image["id"]


@pytest.mark.parametrize(
    ("tool", "arguments", "code"),
    [
        ("get_job", {"job_id": "job_0123456789abcdef"}, "not_found"),
        ("get_job", {"job_id": "../../etc/passwd"}, "invalid_request"),
        ("get_job", {"job_id": "job_0123456789abcdef", "wait_s": -1}, "invalid_request"),
        ("get_job", {"job_id": "job_0123456789abcdef", "wait_s": 10_000}, "invalid_request"),
        ("cancel_job", {"job_id": "job_x"}, "invalid_request"),
        ("generate_image", {"prompt": "x", "wait_s": 301}, "invalid_request"),
        ("delete_image", {"image_id": "../../../etc/passwd"}, "invalid_request"),
        ("delete_image", {"image_id": "imagegen://images/../x"}, "invalid_request"),
        ("delete_image", {"image_id": "20261201T120000Z-0a1b2c3d"}, "not_found"),
        ("search_images", {"limit": 0}, "invalid_request"),
    ],
)
async def test_bad_job_and_image_arguments_are_structured_errors(
    make_settings: Callable[..., Settings], tmp_path: Path, tool: str, arguments: dict[str, Any], code: str
) -> None:
    bystander = tmp_path / "images" / "keep.png"
    bystander.parent.mkdir(parents=True)
    bystander.write_bytes(b"x")
    async with Client(build_server(make_settings(), [FunctionProvider(name="quick")])) as client:
        result = await client.call_tool(tool, arguments)
        alive = await client.call_tool("list_providers", {})
    assert error_of(result)["code"] == code
    assert not alive.is_error and bystander.read_bytes() == b"x"


async def test_delete_image_removes_the_file_and_the_search_entry(make_settings: Callable[..., Settings]) -> None:
    async with Client(build_server(make_settings(), [FunctionProvider(name="quick")])) as client:
        (image,) = assert_image_result(
            await client.call_tool("generate_image", {"prompt": "a red fox", "width": 64, "height": 64}), count=1
        )
        deleted = await client.call_tool("delete_image", {"image_id": image["uri"]})
        found = await client.call_tool("search_images", {"query": "fox"})
        again = await client.call_tool("delete_image", {"image_id": image["id"]})
    assert (deleted.structured_content or {})["deleted"]["id"] == image["id"]
    assert (deleted.structured_content or {})["file_removed"] is True
    assert not Path(image["path"]).exists()
    assert (found.structured_content or {})["images"] == []
    assert (again.structured_content or {})["file_removed"] is False


async def test_the_daily_budget_refuses_without_falling_back_to_another_paid_provider(
    make_settings: Callable[..., Settings],
) -> None:
    paid = FunctionProvider(costly, name="paid", priority=1, paid=True)
    other_paid = FunctionProvider(costly, name="otherpaid", priority=2, paid=True)
    free = FunctionProvider(name="free", priority=3)
    settings = make_settings(IMAGEGEN_DAILY_BUDGET_USD="0.005", IMAGEGEN_PROVIDER_ORDER="paid,otherpaid")
    async with Client(build_server(settings, [paid, other_paid])) as client:
        arguments = {"prompt": "x", "width": 64, "height": 64}
        first = await client.call_tool("generate_image", arguments)
        second = await client.call_tool("generate_image", arguments)
        third = await client.call_tool("generate_image", arguments)
        usage = (await client.call_tool("list_providers", {})).structured_content or {}
    assert_image_result(first, count=1) and assert_image_result(second, count=1)
    error = error_of(third)
    assert error["code"] == "budget_exceeded"
    assert "IMAGEGEN_DAILY_BUDGET_USD" in " ".join(error["remediation"]) + error["message"]
    assert [(a["provider"], a["outcome"], a["code"]) for a in error["attempts"]] == [
        ("paid", "skipped", "budget_exceeded"),
        ("otherpaid", "skipped", "budget_exceeded"),
    ]
    assert len(paid.calls) == 2 and other_paid.calls == []
    (row,) = usage["usage"]["providers"]
    assert row["provider"] == "paid" and row["today_usd"] == pytest.approx(2 * COST)
    assert usage["usage"]["daily_budget_usd"] == 0.005
    async with Client(build_server(settings, [paid, other_paid, free])) as client:
        served = await client.call_tool("generate_image", arguments)
    assert (served.structured_content or {})["model"] == "free:free_model"  # a free provider may still serve


async def test_fifty_concurrent_jobs_over_streamable_http_are_recorded_once(tmp_path: Path) -> None:
    db = tmp_path / "history.sqlite3"
    results: list[bool] = []
    with running_server(tmp_path, "--transport", "streamable-http", IMAGEGEN_DB=str(db)) as port:
        async with Client(f"http://127.0.0.1:{port}/mcp") as client:

            async def one(index: int) -> None:
                arguments = {"prompt": f"square {index}", "width": 64, "height": 64}
                results.append(not (await client.call_tool("generate_image", arguments)).is_error)

            async with anyio.create_task_group() as group:
                for index in range(50):
                    group.start_soon(one, index)
    assert results == [True] * 50
    connection = sqlite3.connect(db)
    assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    prompts = [json.loads(row[0])["prompt"] for row in connection.execute("SELECT request FROM jobs")]
    assert sorted(prompts) == sorted(f"square {index}" for index in range(50))
    assert connection.execute("SELECT count(*) FROM images").fetchone() == (50,)


def test_a_killed_server_leaves_its_job_interrupted_and_the_history_readable(tmp_path: Path) -> None:
    plugin = write_palette_plugin(tmp_path / "plugin")
    db = tmp_path / "history.sqlite3"
    env = clean_environ(
        PYTHONPATH=plugin,
        IMAGEGEN_OUTPUT_DIR=str(tmp_path / "out"),
        IMAGEGEN_DB=str(db),
        IMAGEGEN_DEFAULT_PROVIDER="palette",
        IMAGEGEN_WAIT_S="0",
    )
    first = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {
            "name": "generate_image",
            "arguments": {"prompt": "a blue heron", "wait_s": 30, "width": 64, "height": 64},
        },
    }
    slow_job = {
        "jsonrpc": "2.0",
        "id": 2,
        "method": "tools/call",
        "params": {"name": "generate_image", "arguments": {"prompt": "slow painting", "width": 64, "height": 64}},
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "imagegen_mcp"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**env, "PALETTE_DELAY_S": "0"},
        cwd=REPO,
        text=True,
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        process.stdin.write("".join(json.dumps(m) + "\n" for m in (INITIALIZE, INITIALIZED, first)))
        process.stdin.flush()
        answers = [json.loads(process.stdout.readline()) for _ in range(2)]
        assert answers[-1]["result"]["isError"] is False
    finally:
        process.stdin.close()
        process.wait(timeout=30)
    # A second run whose palette is slow: the job is recorded, then the process is killed mid-work.
    killed = subprocess.Popen(
        [sys.executable, "-m", "imagegen_mcp"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**env, "PALETTE_DELAY_S": "30"},
        cwd=REPO,
        text=True,
    )
    assert killed.stdin is not None and killed.stdout is not None
    killed.stdin.write("".join(json.dumps(m) + "\n" for m in (INITIALIZE, INITIALIZED, slow_job)))
    killed.stdin.flush()
    handle = [json.loads(killed.stdout.readline()) for _ in range(2)][-1]
    job_id = handle["result"]["structuredContent"]["job"]["id"]
    time.sleep(0.5)
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait(timeout=30)

    requests = [
        {
            "jsonrpc": "2.0",
            "id": 3,
            "method": "tools/call",
            "params": {"name": "get_job", "arguments": {"job_id": job_id}},
        },
        {"jsonrpc": "2.0", "id": 4, "method": "resources/read", "params": {"uri": "imagegen://generations/recent"}},
        {
            "jsonrpc": "2.0",
            "id": 5,
            "method": "tools/call",
            "params": {"name": "search_images", "arguments": {"query": "heron"}},
        },
    ]
    messages, _ = exchange_over_stdio([sys.executable, "-m", "imagegen_mcp"], env, requests)
    answers_by_id = {m["id"]: m for m in messages if "id" in m}
    interrupted = answers_by_id[3]["result"]
    assert interrupted["isError"] is True and interrupted["structuredContent"]["error"]["code"] == "interrupted"
    recent = json.loads(answers_by_id[4]["result"]["contents"][0]["text"])
    assert [generation["images"][0]["id"] for generation in recent] == [
        answers[-1]["result"]["structuredContent"]["images"][0]["id"]
    ]
    (found,) = answers_by_id[5]["result"]["structuredContent"]["images"]
    assert found["prompt"] == "a blue heron"
    assert sqlite3.connect(db).execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_the_history_command_prints_a_table(tmp_path: Path) -> None:
    plugin = write_palette_plugin(tmp_path / "plugin")
    env = clean_environ(
        PYTHONPATH=plugin, IMAGEGEN_OUTPUT_DIR=str(tmp_path / "out"), IMAGEGEN_DEFAULT_PROVIDER="palette"
    )
    for prompt in ("a red square", "a green circle"):
        made = subprocess.run(
            [sys.executable, "-m", "imagegen_mcp", "generate", prompt, "--width", "64", "--height", "64"],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert made.returncode == 0, made.stderr
    listed = subprocess.run(
        [sys.executable, "-m", "imagegen_mcp", "history"], env=env, cwd=REPO, capture_output=True, text=True, timeout=60
    )
    found = subprocess.run(
        [sys.executable, "-m", "imagegen_mcp", "history", "circ"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = listed.stdout.strip().splitlines()
    assert len(lines) == 2 and lines[0].endswith("a green circle") and lines[1].endswith("a red square")
    assert "palette:solid_red" in lines[0] and "imagegen://images/" in lines[0]
    assert found.stdout.strip().splitlines() == [lines[0]]
