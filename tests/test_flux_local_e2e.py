"""flux_local end to end: the tiny real pipelines on the CPU behind the real MCP server, driven by a real
MCP client in memory, and over stdio with the server as a subprocess."""

from __future__ import annotations

import base64
import io
import itertools
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest
from mcp.client import Client
from mcp_types import BlobResourceContents, CallToolResult
from PIL import Image

from imagegen_mcp.config import Settings
from imagegen_mcp.providers.flux_local import FluxLocalProvider
from imagegen_mcp.server.app import build_server
from tests.e2e import assert_image_result, clean_environ, error_of, exchange_over_stdio, text_of
from tests.fakes.tiny_pipelines import (
    ProgressLog,
    RecordingFluxLocalProvider,
    TinyPipelines,
    tiny_environ,
    tiny_provider_type,
    unet_calls,
    write_tiny_lora,
)

pytestmark = pytest.mark.anyio


class Served:
    """A connected client and the flux_local provider the server built."""

    def __init__(self, client: Client, provider_type: type[RecordingFluxLocalProvider]) -> None:
        self.client = client
        self.provider_type = provider_type

    @property
    def provider(self) -> FluxLocalProvider:
        (provider,) = self.provider_type.instances
        return provider

    async def generate(self, progress: Any = None, **arguments: Any) -> CallToolResult:
        return await self.client.call_tool(
            "generate_image", {"prompt": "a red cube on a table", **arguments}, progress_callback=progress
        )

    async def pixels(self, result: CallToolResult) -> np.ndarray[Any, Any]:
        (image,) = assert_image_result(result, count=1)
        (blob,) = (await self.client.read_resource(image["uri"])).contents
        assert isinstance(blob, BlobResourceContents) and blob.mime_type == "image/png"
        decoded = Image.open(io.BytesIO(base64.b64decode(blob.blob)))
        assert decoded.size == (image["width"], image["height"])
        return np.asarray(decoded.convert("RGB")).astype(int)


@pytest.fixture
def serve(tiny_pipelines: TinyPipelines, make_settings: Callable[..., Settings]) -> Callable[..., Any]:
    @asynccontextmanager
    async def serve(**environ: str) -> AsyncIterator[Served]:
        provider_type = tiny_provider_type(tiny_pipelines)
        settings = make_settings(**tiny_environ(tiny_pipelines), **environ)
        async with Client(build_server(settings, providers=[provider_type])) as client:
            yield Served(client, provider_type)

    return serve


@pytest.mark.parametrize("key", ["tiny_sdxl", "tiny_sdxl_file"], ids=["diffusers-folder", "single-file"])
async def test_returns_images_of_the_requested_size(serve: Callable[..., Any], key: str) -> None:
    async with serve() as served:
        result = await served.generate(model=f"flux_local:{key}", width=192, height=128, count=2, seed=11)
        images = assert_image_result(result, count=2)
        first = await served.pixels(await served.generate(model=key, width=192, height=128, seed=11))
    structured = result.structured_content or {}
    assert structured["model"] == f"flux_local:{key}" and not structured["fell_back"]
    assert [(image["width"], image["height"], image["seed"]) for image in images] == [(192, 128, 11), (192, 128, 12)]
    assert first.shape == (128, 192, 3)


async def test_same_seed_same_pixels_and_another_seed_other_pixels(serve: Callable[..., Any]) -> None:
    async with serve() as served:
        a = await served.pixels(await served.generate(seed=5))
        b = await served.pixels(await served.generate(seed=5))
        c = await served.pixels(await served.generate(seed=6))
    assert np.array_equal(a, b)
    assert np.abs(a - c).mean() > 10


@pytest.mark.parametrize(
    ("key", "scheduler"),
    [
        (
            "tiny_sdxl",
            {"class_name": "EulerDiscreteScheduler", "timestep_spacing": "trailing", "prediction_type": "epsilon"},
        ),
        (
            "tiny_sdxl_hub",
            {
                "class_name": "DPMSolverMultistepScheduler",
                "algorithm_type": "sde-dpmsolver++",
                "solver_type": "midpoint",
            },
        ),
    ],
)
async def test_the_scheduler_is_the_one_the_model_config_names(
    serve: Callable[..., Any], key: str, scheduler: dict[str, str]
) -> None:
    async with serve() as served:
        result = await served.generate(model=key)
        assert served.provider.pipelines is not None
        pipe = served.provider.pipelines.loaded[key]
    structured = result.structured_content or {}
    assert structured["details"]["scheduler"] == scheduler
    assert type(pipe.scheduler).__name__ == scheduler["class_name"]
    assert all(pipe.scheduler.config[name] == value for name, value in scheduler.items() if name != "class_name")


async def test_progress_notifications_arrive_in_increasing_order(serve: Callable[..., Any]) -> None:
    log = ProgressLog()
    async with serve() as served:
        result = await served.generate(progress=log, steps=5, count=2)
    assert not result.is_error, text_of(result)
    assert all(later > earlier for earlier, later in itertools.pairwise(log.values))
    assert [m for m in log.messages if "step" in m] == [f"image {i}/2: step {s}/5" for i in (1, 2) for s in range(1, 6)]
    assert log.messages[0] == "loading tiny_sdxl (first use)" and log.messages[-1] == "saving images"


async def test_a_cancelled_call_stops_within_a_step_and_the_next_call_runs(serve: Callable[..., Any]) -> None:
    async with serve() as served:
        assert not (await served.generate(steps=1)).is_error  # loaded: only denoising steps are counted below
        with unet_calls(served.provider, "tiny_sdxl") as calls:
            with anyio.CancelScope() as scope:

                def cancel_at_step_3(message: str) -> None:
                    if message.endswith("step 3/50"):
                        scope.cancel()

                await served.generate(progress=ProgressLog(cancel_at_step_3), steps=50)
            assert scope.cancelled_caught
            after = await served.generate(steps=2, seed=2)
        queue_after = len(served.provider.queue)
    assert not after.is_error, text_of(after)
    cancelled_steps = len(calls) - 2
    assert 3 <= cancelled_steps <= 4  # step 3 reported, at most the step already under way finished
    assert queue_after == 0


async def test_cancel_job_stops_a_local_job_within_a_step_or_two(
    serve: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    """``wait_s: 0`` returns the job at once; ``cancel_job`` stops its denoising; no file is left."""
    async with serve() as served:
        assert not (await served.generate(steps=1)).is_error  # loaded: only denoising steps are counted below
        output_dir = make_settings().output_dir
        before = set(output_dir.iterdir())
        with unet_calls(served.provider, "tiny_sdxl") as calls:
            handle = await served.generate(steps=150, wait_s=0)
            job_id = (handle.structured_content or {})["job"]["id"]
            while len(calls) < 3:  # under way
                await anyio.sleep(0.01)
            at_cancel = len(calls)
            cancelled = await served.client.call_tool("cancel_job", {"job_id": job_id})
            steps_after_cancel = len(calls) - at_cancel
            final = await served.client.call_tool("get_job", {"job_id": job_id})
        after = set(output_dir.iterdir())
    assert (cancelled.structured_content or {})["job"]["status"] == "cancelled"
    assert steps_after_cancel <= 2
    assert error_of(final)["code"] == "cancelled"
    assert after == before


async def test_two_sequential_calls_load_the_pipeline_once(serve: Callable[..., Any]) -> None:
    async with serve() as served:
        first = await served.generate(seed=1)
        second = await served.generate(seed=2)
        loaded = list(served.provider.pipelines.loaded) if served.provider.pipelines else []
    assert isinstance((first.structured_content or {})["details"]["pipeline_load_ms"], int)
    assert (second.structured_content or {})["details"]["pipeline_load_ms"] is None
    assert loaded == ["tiny_sdxl"]


async def test_two_concurrent_calls_run_one_after_the_other_and_the_server_keeps_answering(
    serve: Callable[..., Any],
) -> None:
    logs = {"a": ProgressLog(), "b": ProgressLog()}
    results: dict[str, CallToolResult] = {}
    async with serve() as served:

        async def call(name: str, seed: int) -> None:
            results[name] = await served.generate(progress=logs[name], steps=8, seed=seed)

        async with anyio.create_task_group() as group:
            group.start_soon(call, "a", 1)
            group.start_soon(call, "b", 2)
            with anyio.fail_after(60):
                while not any("step" in m for log in logs.values() for m in log.messages):
                    await anyio.sleep(0.01)
            # A generation is on the device in its worker thread; the server still answers at once.
            listing = await served.client.call_tool("list_models", {})
            answered_during_generation = not all(name in results for name in logs)

    assert not results["a"].is_error and not results["b"].is_error
    assert not listing.is_error and answered_during_generation
    first, second = sorted(logs.values(), key=lambda log: min(log.step_times()))
    assert max(first.step_times()) < min(second.step_times())
    assert "waiting for the cpu device: 1 generation(s) ahead" in second.messages


async def test_out_of_memory_is_a_structured_error_and_the_server_keeps_serving(serve: Callable[..., Any]) -> None:
    import torch

    def exhaust(*_: Any) -> None:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    async with serve() as served:
        assert not (await served.generate(steps=1)).is_error
        assert served.provider.pipelines is not None
        handle = served.provider.pipelines.loaded["tiny_sdxl"].unet.register_forward_pre_hook(exhaust)
        try:
            failed = await served.generate(width=256, height=256)
        finally:
            handle.remove()
        after = await served.generate()
    error = error_of(failed)
    assert failed.is_error and error["code"] == "out_of_memory" and error["retryable"] is True
    assert any("smaller size" in step for step in error["remediation"])
    assert [attempt["code"] for attempt in error["attempts"]] == ["out_of_memory"]
    assert not after.is_error, text_of(after)


async def test_missing_weights_make_flux_local_unavailable_with_the_download_steps(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    cache = tmp_path / "empty-hub"
    settings = make_settings(
        FLUX_LOCAL_DEVICE="cpu", FLUX_LOCAL_CACHE_DIR=str(cache), IMAGEGEN_DEFAULT_PROVIDER="flux_local"
    )
    async with Client(build_server(settings, providers=[FluxLocalProvider])) as client:
        providers = (await client.call_tool("list_providers", {})).structured_content or {}
        result = await client.call_tool("generate_image", {"prompt": "a lighthouse"})
    (status,) = providers["providers"]
    assert status["available"] is False
    assert status["reason"].startswith("none of its models can run here (default model lightning_4step: weights")
    pull = f"Download it: FLUX_LOCAL_CACHE_DIR={cache} imagegen-mcp pull lightning_4step"
    assert status["remediation"][0].startswith(pull)
    error = error_of(result)
    assert result.is_error and error["code"] == "provider_unavailable"
    assert error["remediation"][0].startswith(pull)
    assert any("FLUX_LOCAL_ALLOW_DOWNLOAD=true" in step for step in error["remediation"])


def test_stdout_carries_only_json_rpc_while_generating_over_stdio(
    tiny_pipelines: TinyPipelines, tmp_path: Path
) -> None:
    """The server as a subprocess: loading diffusers, its progress bars and logs must all stay off stdout."""
    env = clean_environ(
        **tiny_environ(tiny_pipelines), IMAGEGEN_OUTPUT_DIR=str(tmp_path / "out"), IMAGEGEN_LOG_LEVEL="DEBUG"
    )
    arguments = {"prompt": "a red cube", "model": "tiny_sdxl_file", "width": 128, "height": 192, "steps": 3, "seed": 9}
    requests = [
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "generate_image", "arguments": arguments, "_meta": {"progressToken": "gen"}},
        },
    ]
    command = [sys.executable, "-m", "tests.fakes.tiny_flux_stdio", str(tiny_pipelines.root)]
    parsed, stderr = exchange_over_stdio(command, env, requests)

    progress = [m["params"] for m in parsed if m.get("method") == "notifications/progress"]
    assert [p["progressToken"] for p in progress] == ["gen"] * len(progress)
    assert [p["message"] for p in progress if "step" in p["message"]] == [f"image 1/1: step {s}/3" for s in (1, 2, 3)]
    assert all(later["progress"] > earlier["progress"] for earlier, later in itertools.pairwise(progress))
    (answer,) = [m for m in parsed if m.get("id") == 2]
    assert answer["result"]["isError"] is False
    (image,) = answer["result"]["structuredContent"]["images"]
    assert (image["width"], image["height"], image["seed"]) == (128, 192, 9)
    assert Image.open(image["path"]).size == (128, 192)
    assert "Loading pipeline components" in stderr  # diffusers' loading bar went to stderr


async def test_list_models_marks_a_model_whose_weights_are_missing(serve: Callable[..., Any]) -> None:
    async with serve() as served:
        present = served.provider.models["tiny_sdxl"]
        gone = present.model_copy(update={"key": "tiny_gone", "path": Path("/nonexistent/tiny-gone")})
        served.provider.models["tiny_gone"] = gone
        listing = (await served.client.call_tool("list_models", {"provider": "flux_local"})).structured_content or {}
        result = await served.client.call_tool("generate_image", {"prompt": "x", "model": "tiny_gone"})
    models = {model["key"]: model for model in listing["providers"][0]["models"]}
    assert models["tiny_sdxl"]["available"] is True and models["tiny_sdxl"]["reason"] is None
    assert models["tiny_gone"]["available"] is False
    assert "weights not on this machine" in models["tiny_gone"]["reason"]
    assert result.is_error and error_of(result)["code"] == "provider_unavailable"


async def test_image_to_image_edits_a_result_by_its_uri_with_the_weights_already_loaded(
    serve: Callable[..., Any],
) -> None:
    async with serve() as served:
        made = await served.generate(seed=3, width=128, height=128)
        (image,) = assert_image_result(made, count=1)
        with unet_calls(served.provider, "tiny_sdxl") as calls:
            edited = await served.client.call_tool(
                "edit_image",
                {"prompt": "the same cube, darker", "image": image["uri"], "strength": 0.5, "steps": 8, "seed": 3},
            )
        assert served.provider.pipelines is not None
        loaded = dict(served.provider.pipelines.loaded)
        derived = list(served.provider.pipelines.derived)
        source = await served.pixels(made)
        changes = []
        for strength in (0.2, 1.0):
            arguments = {"prompt": "the same cube", "image": image["uri"], "strength": strength, "steps": 8, "seed": 9}
            edit = await served.pixels(await served.client.call_tool("edit_image", arguments))
            changes.append(np.abs(edit - source).mean())
    structured = edited.structured_content or {}
    assert structured["operation"] == "image_to_image"
    assert structured["details"]["pipeline_load_ms"] is None  # loaded once, by the generation
    assert list(loaded) == ["tiny_sdxl"] and derived == [("tiny_sdxl", "image_to_image")]
    assert len(calls) == 4  # strength 0.5 of 8 steps
    (parent,) = structured["inputs"]
    assert parent["image_id"] == image["id"] and parent["uri"] == image["uri"] and len(parent["sha256"]) == 64
    assert 0 < changes[0] < changes[1]  # the higher the strength, the further from the input


async def test_inpainting_keeps_the_pixels_outside_the_mask(serve: Callable[..., Any], tmp_path: Path) -> None:
    async with serve() as served:
        made = await served.generate(seed=4, width=128, height=128)
        (image,) = assert_image_result(made, count=1)
        mask = Image.new("L", (128, 128), 0)
        mask.paste(255, (32, 32, 96, 96))  # repaint the centre only
        buffer = io.BytesIO()
        mask.save(buffer, format="PNG")
        mask_uri = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
        edited = await served.client.call_tool(
            "edit_image",
            {"prompt": "a blue sphere", "image": image["uri"], "mask": mask_uri, "strength": 1.0, "seed": 5},
        )
        source = await served.pixels(made)
        result = await served.pixels(edited)
    structured = edited.structured_content or {}
    assert structured["operation"] == "inpaint"
    assert [item["argument"] for item in structured["inputs"]] == ["image", "mask"]
    inside = np.zeros((128, 128), dtype=bool)
    inside[40:88, 40:88] = True  # well inside the white square (the VAE blurs its edge)
    outside = np.ones((128, 128), dtype=bool)
    outside[24:104, 24:104] = False
    change_outside = np.abs(result - source)[outside].mean()
    change_inside = np.abs(result - source)[inside].mean()
    assert change_outside < 1 and change_inside > 8


async def test_a_lora_changes_the_output_and_goes_away_when_not_asked_for(
    serve: Callable[..., Any], tiny_pipelines: TinyPipelines, tmp_path: Path
) -> None:
    lora = write_tiny_lora(tiny_pipelines, tmp_path / "lora")
    async with serve() as served:
        plain = await served.pixels(await served.generate(seed=21))
        with_lora = await served.generate(seed=21, loras=[{"path": str(lora), "weight": 1.0}])
        changed = await served.pixels(with_lora)
        again = await served.pixels(await served.generate(seed=21))
        refused = await served.generate(seed=21, loras=[{"path": str(tmp_path / "missing.safetensors")}])
    assert np.abs(changed - plain).mean() > 2  # the same seed, another picture
    assert np.array_equal(again, plain)  # unloaded: the model's own weights again
    assert (with_lora.structured_content or {})["parameters"]["loras"] == [
        {"model": None, "path": str(lora), "weight": 1.0}
    ]
    assert (
        error_of(refused)["code"] == "invalid_request"
        and "missing.safetensors: no such file" in error_of(refused)["message"]
    )
