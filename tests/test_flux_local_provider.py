"""flux_local on tiny real pipelines: loading from every source, seeds, schedulers, progress, cancellation,
the device queue, the pipeline cache, out-of-memory mapping, and availability from the disk alone."""

from __future__ import annotations

import gc
import io
import itertools
import json
import subprocess
import sys
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest
from PIL import Image

from imagegen_mcp.catalog import Catalog
from imagegen_mcp.config import Settings
from imagegen_mcp.errors import ErrorCode, ImageGenError, OutOfMemoryError, ProviderError
from imagegen_mcp.providers.base import Availability, GenerationRequest, Progress, registry
from imagegen_mcp.providers.flux_local import FluxLocalProvider
from imagegen_mcp.providers.flux_local.config import FLUX_LOCAL_MODELS, FluxModelConfig, SchedulerConfig
from imagegen_mcp.providers.flux_local.provider import _cuda_present
from imagegen_mcp.providers.flux_local.queue import DeviceQueue
from imagegen_mcp.requests import ImageRequest
from imagegen_mcp.service import ImageService
from tests.e2e import REPO
from tests.fakes.tiny_pipelines import (
    HUB_COMMIT,
    ProgressLog,
    TinyPipelines,
    tiny_environ,
    tiny_provider_type,
    unet_calls,
)

pytestmark = pytest.mark.anyio

ProviderFactory = Callable[..., FluxLocalProvider]


@pytest.fixture
def make_provider(tiny_pipelines: TinyPipelines, make_settings: Callable[..., Settings]) -> Iterator[ProviderFactory]:
    """Providers over the tiny models; every one is closed (pipelines unloaded) at the end of the test."""
    made: list[FluxLocalProvider] = []

    def make(**environ: str) -> FluxLocalProvider:
        provider = tiny_provider_type(tiny_pipelines)(make_settings(**tiny_environ(tiny_pipelines), **environ))
        made.append(provider)
        return provider

    yield make
    for provider in made:
        anyio.run(provider.aclose)


def request(**overrides: Any) -> GenerationRequest:
    values: dict[str, Any] = {
        "prompt": "a red cube on a table",
        "negative_prompt": None,
        "width": 128,
        "height": 128,
        "aspect_ratio": None,
        "steps": 4,
        "guidance_scale": 0.0,
        "seed": 1234,
        "count": 1,
    }
    return GenerationRequest(**{**values, **overrides})


def pixels(data: bytes) -> np.ndarray[Any, Any]:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    return np.asarray(image.convert("RGB")).astype(int)


# -- loading and generating -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "source"),
    [
        ("tiny_sdxl", "local diffusers folder"),
        ("tiny_sdxl_file", "local single-file checkpoint"),
        ("tiny_sdxl_hub", "checkpoint and base configs from the Hugging Face cache"),
        ("tiny_sd_hub", "diffusers repository from the Hugging Face cache"),
        ("tiny_sd_file", "local SD single-file checkpoint"),
    ],
)
async def test_every_source_loads_and_generates_the_requested_size(
    make_provider: ProviderFactory, key: str, source: str
) -> None:
    provider = make_provider()
    model = provider.models[key]
    assert isinstance(model, FluxModelConfig)
    result = await provider.generate(
        request(width=192, height=128, guidance_scale=model.default_guidance), model, Progress()
    )

    (image,) = result.images
    assert image.mime_type == "image/png" and image.seed == 1234
    assert Image.open(io.BytesIO(image.data)).size == (192, 128), source
    # The scheduler is the one the model config names, with its settings, on the pipeline that ran.
    assert provider.pipelines is not None
    scheduler = provider.pipelines.loaded[key].scheduler
    assert type(scheduler).__name__ == model.scheduler.class_name
    assert {name: scheduler.config[name] for name in model.scheduler.config} == model.scheduler.config
    assert result.details["scheduler"] == {"class_name": model.scheduler.class_name, **model.scheduler.config}
    assert result.details["device"] == "cpu" and result.details["dtype"] == "float32"


@pytest.mark.parametrize(("folder", "checkpoint"), [("tiny_sdxl", "tiny_sdxl_file"), ("tiny_sd_hub", "tiny_sd_file")])
async def test_single_file_checkpoint_holds_the_same_model_as_the_folder(
    make_provider: ProviderFactory, folder: str, checkpoint: str
) -> None:
    """The LDM-layout checkpoint, assembled by from_single_file, is the folder's model: same seed, same
    image. Bit-exactness is not expected: CPU kernels take other code paths for differently aligned
    weights, which moves a handful of pixels by one level."""
    provider = make_provider(FLUX_LOCAL_MAX_PIPELINES="2")
    from_folder = await provider.generate(request(seed=7), provider.models[folder], Progress())
    from_file = await provider.generate(request(seed=7), provider.models[checkpoint], Progress())
    other_seed = await provider.generate(request(seed=8), provider.models[checkpoint], Progress())

    a, b, c = (pixels(result.images[0].data) for result in (from_folder, from_file, other_seed))
    assert np.abs(a - b).max() <= 2
    assert np.abs(b - c).mean() > 10


async def test_each_image_is_reproducible_from_its_reported_seed(make_provider: ProviderFactory) -> None:
    provider = make_provider()
    model = provider.models["tiny_sdxl"]
    batch = await provider.generate(request(seed=40, count=2), model, Progress())
    again = await provider.generate(request(seed=40, count=2), model, Progress())
    second_alone = await provider.generate(request(seed=41), model, Progress())

    assert [image.seed for image in batch.images] == [40, 41]
    assert [image.data for image in batch.images] == [image.data for image in again.images]
    assert np.array_equal(pixels(batch.images[1].data), pixels(second_alone.images[0].data))
    assert np.abs(pixels(batch.images[0].data) - pixels(batch.images[1].data)).mean() > 10


async def test_progress_reports_every_step_of_every_image_and_only_increases(make_provider: ProviderFactory) -> None:
    provider = make_provider()
    recorder = ProgressLog()
    await provider.generate(request(steps=3, count=2), provider.models["tiny_sdxl"], Progress(recorder))

    assert recorder.messages[0] == "loading tiny_sdxl (first use)"
    steps = [message for message in recorder.messages if "step" in message]
    assert steps == [f"image {i}/2: step {s}/3" for i in (1, 2) for s in (1, 2, 3)]
    values = recorder.values
    assert all(later > earlier for earlier, later in itertools.pairwise(values))
    assert values[-1] < 100  # the service reports saving after the provider is done


# -- cancellation and the device queue ------------------------------------------------------------------


async def test_cancellation_stops_at_the_next_step_and_frees_the_device(make_provider: ProviderFactory) -> None:
    provider = make_provider()
    model = provider.models["tiny_sdxl"]
    await provider.generate(request(steps=1), model, Progress())  # load once, so only denoising is counted

    with unet_calls(provider, "tiny_sdxl") as calls, anyio.CancelScope() as scope:

        def cancel_at_step_3(message: str) -> None:
            if message.endswith("step 3/50"):
                scope.cancel()

        await provider.generate(request(steps=50), model, Progress(ProgressLog(cancel_at_step_3)))
    assert scope.cancelled_caught
    # Cancelled while step 3 was being reported: the pipeline stopped there, no step 4 ran.
    assert len(calls) == 3
    assert len(provider.queue) == 0

    with unet_calls(provider, "tiny_sdxl") as calls:
        result = await provider.generate(request(steps=2), model, Progress())
    assert len(result.images) == 1 and len(calls) == 2


async def test_a_deadline_stops_the_pipeline_like_a_cancellation(make_provider: ProviderFactory) -> None:
    """The service's timeout is an anyio deadline: it must stop the worker thread as a client's cancel does."""
    provider = make_provider()
    model = provider.models["tiny_sdxl"]
    await provider.generate(request(steps=1), model, Progress())

    started = time.perf_counter()
    with unet_calls(provider, "tiny_sdxl") as calls, pytest.raises(TimeoutError), anyio.fail_after(0.3):
        await provider.generate(request(steps=150, width=256, height=256), model, Progress())
    assert 0 < len(calls) < 150
    assert time.perf_counter() - started < 5
    assert len(provider.queue) == 0


async def test_concurrent_requests_run_one_after_the_other_in_arrival_order(make_provider: ProviderFactory) -> None:
    provider = make_provider()
    model = provider.models["tiny_sdxl"]
    first, second = ProgressLog(), ProgressLog()
    results: dict[str, Any] = {}

    async def run(name: str, recorder: ProgressLog, seed: int) -> None:
        results[name] = await provider.generate(request(steps=6, seed=seed), model, Progress(recorder))

    async with anyio.create_task_group() as group:
        group.start_soon(run, "first", first, 1)
        group.start_soon(run, "second", second, 2)

    assert set(results) == {"first", "second"}
    assert second.messages[0] == "waiting for the cpu device: 1 generation(s) ahead"
    assert max(first.step_times()) < min(second.step_times())
    assert results["first"].details["pipeline_load_ms"] is not None
    assert results["second"].details["pipeline_load_ms"] is None  # loaded once, by the first


async def test_queue_is_first_come_first_served_and_a_cancelled_waiter_leaves_the_line() -> None:
    queue = DeviceQueue()
    order: list[str] = []
    positions: dict[str, list[int]] = {"b": [], "c": [], "d": []}
    release_a = anyio.Event()
    c_scope = anyio.CancelScope()

    async def hold(name: str, until: anyio.Event | None = None) -> None:
        async def on_wait(ahead: int) -> None:
            positions[name].append(ahead)

        async with queue.turn(on_wait):
            order.append(name)
            if until is not None:
                await until.wait()

    async def give_up_later(scope: anyio.CancelScope) -> None:
        with scope:
            await hold("c")

    async with anyio.create_task_group() as group:
        group.start_soon(hold, "a", release_a)
        await anyio.sleep(0.01)
        group.start_soon(hold, "b")
        await anyio.sleep(0.01)
        group.start_soon(give_up_later, c_scope)
        await anyio.sleep(0.01)
        group.start_soon(hold, "d")
        await anyio.sleep(0.01)
        assert len(queue) == 4
        c_scope.cancel()  # c gives up while waiting: d moves up behind b
        await anyio.sleep(0.01)
        release_a.set()

    assert order == ["a", "b", "d"]
    assert positions == {"b": [1], "c": [2], "d": [3, 2]}
    assert len(queue) == 0


# -- pipeline cache ---------------------------------------------------------------------------------------


async def test_pipeline_is_loaded_once_and_reused(make_provider: ProviderFactory) -> None:
    provider = make_provider()
    model = provider.models["tiny_sdxl"]
    first = await provider.generate(request(), model, Progress())
    second = await provider.generate(request(seed=99), model, Progress())
    assert isinstance(first.details["pipeline_load_ms"], int)
    assert second.details["pipeline_load_ms"] is None


async def test_least_recently_used_pipeline_is_evicted_and_its_memory_freed(make_provider: ProviderFactory) -> None:
    provider = make_provider(FLUX_LOCAL_MAX_PIPELINES="2")
    models = provider.models
    await provider.generate(request(), models["tiny_sdxl"], Progress())
    await provider.generate(request(), models["tiny_sd_file"], Progress())
    await provider.generate(request(), models["tiny_sdxl"], Progress())  # now the most recently used
    assert provider.pipelines is not None
    evicted = weakref.ref(provider.pipelines.loaded["tiny_sd_file"].unet)

    await provider.generate(request(), models["tiny_sdxl_file"], Progress())
    assert list(provider.pipelines.loaded) == ["tiny_sdxl", "tiny_sdxl_file"]
    gc.collect()
    assert evicted() is None  # nothing holds the evicted pipeline's weights any more


async def test_one_pipeline_by_default(make_provider: ProviderFactory) -> None:
    provider = make_provider()
    await provider.generate(request(), provider.models["tiny_sdxl"], Progress())
    await provider.generate(request(), provider.models["tiny_sd_hub"], Progress())
    assert provider.pipelines is not None and list(provider.pipelines.loaded) == ["tiny_sd_hub"]


async def test_aclose_unloads_every_pipeline(make_provider: ProviderFactory) -> None:
    provider = make_provider()
    await provider.generate(request(), provider.models["tiny_sdxl"], Progress())
    assert provider.pipelines is not None
    await provider.aclose()
    assert list(provider.pipelines.loaded) == []


# -- out of memory ----------------------------------------------------------------------------------------


def _cpu_allocation_failure(*_: Any) -> None:
    import torch

    torch.empty(2**50, dtype=torch.uint8)  # a real allocator failure: 1 PiB


def _cuda_out_of_memory(*_: Any) -> None:
    import torch

    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")


@pytest.mark.parametrize("fail", [_cpu_allocation_failure, _cuda_out_of_memory], ids=["cpu-allocator", "cuda"])
async def test_out_of_memory_is_a_structured_fallback_error_and_the_device_keeps_serving(
    make_provider: ProviderFactory, fail: Callable[..., None]
) -> None:
    provider = make_provider()
    model = provider.models["tiny_sdxl"]
    await provider.generate(request(steps=1), model, Progress())
    assert provider.pipelines is not None
    handle = provider.pipelines.loaded["tiny_sdxl"].unet.register_forward_pre_hook(fail)
    try:
        with pytest.raises(OutOfMemoryError) as caught:
            await provider.generate(request(width=256, height=256, count=2), model, Progress())
    finally:
        handle.remove()

    error = caught.value
    assert error.code is ErrorCode.OUT_OF_MEMORY
    assert error.allows_fallback and error.retryable
    assert "tiny_sdxl ran out of memory on cpu at 256x256, 2 image(s)" in error.message
    remediation = " ".join(error.remediation)
    assert "smaller size" in remediation and "fewer images" in remediation and "lighter model" in remediation
    assert len(provider.queue) == 0
    result = await provider.generate(request(), model, Progress())
    assert len(result.images) == 1


# -- availability and missing weights ---------------------------------------------------------------------


def _cache_file(cache: Path, repo_id: str, filename: str) -> None:
    """Put one (empty) file into a Hugging Face cache folder, as a download would."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    target = repo / "snapshots" / HUB_COMMIT / filename
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"")
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(HUB_COMMIT)


SDXL_BASE_CONFIGS = [
    "model_index.json",
    "scheduler/scheduler_config.json",
    *(f"{part}/config.json" for part in ("unet", "vae", "text_encoder", "text_encoder_2")),
    *(f"{t}/{f}" for t in ("tokenizer", "tokenizer_2") for f in ("tokenizer_config.json", "vocab.json", "merges.txt")),
]


def real_provider(make_settings: Callable[..., Settings], cache: Path, **environ: str) -> FluxLocalProvider:
    return FluxLocalProvider(make_settings(FLUX_LOCAL_DEVICE="cpu", FLUX_LOCAL_CACHE_DIR=str(cache), **environ))


def test_no_weights_anywhere_is_unavailable_with_the_exact_download_command(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    cache = tmp_path / "hub"
    provider = real_provider(make_settings, cache)
    availability = provider.check()
    reason = availability.reason
    assert reason is not None and not availability.met
    assert "none of its models can run here (default model lightning_4step: weights not on this machine" in reason
    assert (
        f"the Hugging Face cache ({cache}) lacks sdxl_lightning_4step.safetensors of ByteDance/SDXL-Lightning "
        "(the checkpoint)" in reason
    )
    steps = availability.steps
    assert steps[0] == f"Download it: FLUX_LOCAL_CACHE_DIR={cache} imagegen-mcp pull lightning_4step"
    assert steps[1] == (
        f"Or download the checkpoint with the Hugging Face CLI: hf download ByteDance/SDXL-Lightning "
        f"sdxl_lightning_4step.safetensors --cache-dir {cache}"
    )
    assert "FLUX_LOCAL_ALLOW_DOWNLOAD=true" in steps[2]


def test_a_checkpoint_without_its_base_configs_is_missing_those(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    cache = tmp_path / "hub"
    _cache_file(cache, "ByteDance/SDXL-Lightning", "sdxl_lightning_4step.safetensors")
    provider = real_provider(make_settings, cache)
    lightning = provider.models["lightning_4step"]

    problem = provider.weights.missing(lightning)
    assert problem is not None
    assert problem.reason == (
        f"the Hugging Face cache ({cache}) lacks model_index.json, scheduler/scheduler_config.json, unet/config.json "
        "and 9 more of stabilityai/stable-diffusion-xl-base-1.0 (the base model's configs and tokenizers)"
    )
    assert problem.steps[0] == f"Download it: FLUX_LOCAL_CACHE_DIR={cache} imagegen-mcp pull lightning_4step"
    assert problem.steps[1] == (
        "Or download the base model's configs and tokenizers with the Hugging Face CLI: hf download "
        f"stabilityai/stable-diffusion-xl-base-1.0 --include '*.json' --include '*.txt' --cache-dir {cache}"
    )

    for name in SDXL_BASE_CONFIGS:
        _cache_file(cache, "stabilityai/stable-diffusion-xl-base-1.0", name)
    assert provider.weights.missing(lightning) is None
    # One model on disk makes the provider available; the others stay unavailable one by one.
    availability = provider.check()
    assert availability.met
    assert availability.model("lightning_4step").met
    assert not availability.model("juggernaut_xi").met
    assert availability.model("juggernaut_xi").steps[0].endswith("imagegen-mcp pull juggernaut_xi")
    assert "Juggernaut-XI-byRunDiffusion.safetensors" in availability.model("juggernaut_xi").steps[1]


def test_a_diffusers_repository_needs_its_weights_too(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    cache = tmp_path / "hub"
    for name in ["model_index.json", "scheduler/scheduler_config.json", "unet/config.json"]:
        _cache_file(cache, "stabilityai/sd-turbo", name)
    provider = real_provider(make_settings, cache)
    turbo = provider.models["sd_turbo"]
    problem = provider.weights.missing(turbo)
    assert problem is not None
    assert "lacks unet/diffusion_pytorch_model.safetensors, vae/config.json" in problem.reason
    assert "--include '*/diffusion_pytorch_model.safetensors'" in problem.steps[1]


def test_downloads_allowed_makes_missing_weights_no_obstacle(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    provider = real_provider(make_settings, tmp_path / "hub", FLUX_LOCAL_ALLOW_DOWNLOAD="true")
    assert provider.check() == Availability(met=True)


def test_local_paths_are_checked_on_disk(tiny_pipelines: TinyPipelines, tmp_path: Path) -> None:
    from imagegen_mcp.providers.flux_local.weights import WeightsLocator

    locator = WeightsLocator(None, allow_download=False)
    scheduler = SchedulerConfig(class_name="EulerDiscreteScheduler")
    common: dict[str, Any] = {"display_name": "x", "pipeline": "sdxl", "default_steps": 4, "default_guidance": 0.0}
    gone = FluxModelConfig(key="gone", path=tmp_path / "gone.safetensors", scheduler=scheduler, **common)
    partial = FluxModelConfig(key="partial", path=tmp_path, scheduler=scheduler, **common)
    whole = FluxModelConfig(key="whole", path=tiny_pipelines.folder("sdxl"), scheduler=scheduler, **common)

    gone_problem, partial_problem = locator.missing(gone), locator.missing(partial)
    assert (
        gone_problem is not None and gone_problem.reason == f"checkpoint {tmp_path / 'gone.safetensors'} does not exist"
    )
    assert partial_problem is not None
    assert partial_problem.reason.startswith(f"{tmp_path} is not a complete diffusers-format folder: missing")
    assert locator.missing(whole) is None


@pytest.mark.parametrize(
    ("model", "command"),
    [
        ("juggernaut_xi", "hf download RunDiffusion/Juggernaut-XI-v11 Juggernaut-XI-byRunDiffusion.safetensors"),
        ("sd_turbo", "hf download stabilityai/sd-turbo --include '*.json'"),
    ],
)
async def test_asking_for_a_model_without_weights_names_that_models_download(
    make_settings: Callable[..., Settings], tmp_path: Path, model: str, command: str
) -> None:
    """The fix is for the model asked for, not the default one; nothing is loaded to find that out."""
    provider = real_provider(make_settings, tmp_path / "hub")
    service = ImageService(provider.settings, Catalog([provider]))
    with pytest.raises(ImageGenError) as caught:
        await service.generate(ImageRequest(prompt="x", model=f"flux_local:{model}"))
    error = caught.value
    assert error.code == ErrorCode.PROVIDER_UNAVAILABLE and error.model == f"flux_local:{model}"
    assert error.message.startswith(f"flux_local:{model} is unavailable: weights not on this machine")
    assert error.remediation[0].endswith(f"imagegen-mcp pull {model}")
    assert command in error.remediation[1]
    assert provider.pipelines is None


async def test_a_failed_download_is_a_retryable_fallback_error(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """Downloads allowed, but the Hub is out of reach (HF_HUB_OFFLINE here): a connection-class failure."""
    provider = real_provider(make_settings, tmp_path / "hub", FLUX_LOCAL_ALLOW_DOWNLOAD="true")
    with pytest.raises(ProviderError) as caught:
        await provider.generate(request(), provider.models["sd_turbo"], Progress())
    assert caught.value.message.startswith("Could not download stabilityai/sd-turbo (the diffusers-format model)")
    assert caught.value.allows_fallback


@pytest.mark.skipif(_cuda_present(), reason="this machine has an NVIDIA driver")
def test_asking_for_a_missing_device_names_it(make_settings: Callable[..., Settings]) -> None:
    availability = FluxLocalProvider(make_settings(FLUX_LOCAL_DEVICE="cuda")).check()
    assert availability.reason == "FLUX_LOCAL_DEVICE=cuda but that device is not present"
    assert "FLUX_LOCAL_DEVICE=cpu" in availability.steps[0]


def test_availability_imports_no_torch_diffusers_or_transformers(tmp_path: Path) -> None:
    code = (
        "import json, sys\n"
        "from imagegen_mcp.config import Settings\n"
        "from imagegen_mcp.providers.flux_local import FluxLocalProvider\n"
        f"s = Settings.load({{'FLUX_LOCAL_DEVICE': 'cpu', 'FLUX_LOCAL_CACHE_DIR': {str(tmp_path)!r}}})\n"
        "p = FluxLocalProvider(s)\n"
        "p.check(); p.timeout_s(120)\n"
        "print(json.dumps(sorted(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


# -- configs ----------------------------------------------------------------------------------------------


def test_sd_turbo_is_the_cpu_friendly_model() -> None:
    turbo = registry(FLUX_LOCAL_MODELS)["sd_turbo"]
    assert isinstance(turbo, FluxModelConfig)
    assert (turbo.pipeline, turbo.repo_id, turbo.filename) == ("sd", "stabilityai/sd-turbo", None)
    assert (turbo.default_steps, turbo.default_guidance, turbo.default_width, turbo.default_height) == (
        1,
        0.0,
        512,
        512,
    )
    assert not turbo.is_single_file


def test_every_model_names_a_real_scheduler_with_valid_settings() -> None:
    import diffusers

    for model in FLUX_LOCAL_MODELS:
        assert isinstance(model, FluxModelConfig)
        scheduler = getattr(diffusers, model.scheduler.class_name)(**model.scheduler.config)
        assert {name: scheduler.config[name] for name in model.scheduler.config} == model.scheduler.config


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({}, "give exactly one weights source"),
        ({"repo_id": "a/b", "path": "/x"}, "give exactly one weights source"),
        ({"path": "/x.safetensors", "filename": "y.safetensors"}, "filename names a file inside repo_id"),
        ({"repo_id": "a/b"} | {"base_repo_id": "c/d"}, "only apply to single-file checkpoints"),
        ({"path": "/x.ckpt", "base_repo_id": "c/d", "base_path": "/e"}, "at most one of base_repo_id and base_path"),
    ],
)
def test_a_model_has_exactly_one_weights_source(fields: dict[str, Any], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        FluxModelConfig(
            key="m",
            display_name="m",
            pipeline="sdxl",
            default_steps=4,
            default_guidance=0.0,
            scheduler=SchedulerConfig(class_name="EulerDiscreteScheduler"),
            **fields,
        )
