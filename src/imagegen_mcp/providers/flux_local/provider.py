"""Local generation with diffusers pipelines (SDXL and SD class models) on a GPU, or the CPU when asked.

This module is what the server imports at start: availability and the async side of generation. It imports
no torch or diffusers. The heavy half (:mod:`.pipeline`) is imported in the device's worker thread on the
first generation; :mod:`.weights` finds the weights on disk and :mod:`.queue` lines requests up for the device.

A generation waits for its turn on the device (one at a time, in arrival order, told its place in line),
then runs in a worker thread while the event loop keeps serving. The thread reports every denoising step
as progress and checks after each step whether the request was cancelled (by the client or a timeout);
if so it stops the pipeline at that step and gives the device to the next request.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import os
import platform
import shutil
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread

from imagegen_mcp.config import Settings
from imagegen_mcp.errors import GenerationCancelledError
from imagegen_mcp.providers.base import (
    GenerationRequest,
    ImageProvider,
    LoraSpec,
    Progress,
    ProviderInfo,
    ProviderResult,
    Requirement,
    missing_modules,
)
from imagegen_mcp.providers.flux_local.config import (
    FLUX_LOCAL_MODELS,
    NEW_MODEL_DEFAULTS,
    FluxLocalSettings,
    FluxModelConfig,
)
from imagegen_mcp.providers.flux_local.queue import DeviceQueue
from imagegen_mcp.providers.flux_local.weights import WeightsLocator, lora_problem

if TYPE_CHECKING:
    from imagegen_mcp.providers.flux_local.pipeline import DevicePipelines, Generation, Report, ShouldStop

#: Seconds one generation may take, waiting for the device and a first load from disk included.
GPU_TIMEOUT_S = 300.0
CPU_TIMEOUT_S = 1800.0
_REQUIRED_MODULES = ("torch", "diffusers", "transformers", "huggingface_hub")


@functools.cache
def _cuda_present() -> bool:
    """An NVIDIA driver is loaded; checked without importing torch (and once: it is asked on every request)."""
    return os.path.exists("/proc/driver/nvidia/version") or shutil.which("nvidia-smi") is not None


def _mps_present() -> bool:
    return sys.platform == "darwin" and platform.machine() == "arm64"


class FluxLocalProvider(ImageProvider[FluxModelConfig]):
    info = ProviderInfo(
        name="flux_local",
        display_name="Local diffusers",
        description="SDXL-class models run locally with diffusers: private, no per-image cost; needs a GPU.",
        default_model="lightning_4step",
        priority=2,
        paid=False,
    )

    def __init__(self, settings: Settings) -> None:
        self.config = settings.provider_settings(FluxLocalSettings)
        self.weights = WeightsLocator(self.config.cache_dir, allow_download=self.config.allow_download)
        self.queue = DeviceQueue()
        #: The loaded pipelines; created in the worker thread by the first generation.
        self.pipelines: DevicePipelines | None = None
        super().__init__(settings)

    def builtin_models(self) -> Sequence[FluxModelConfig]:
        return FLUX_LOCAL_MODELS

    def _device(self) -> str | None:
        choice = self.config.device
        if choice == "cpu":
            return "cpu"
        if choice in ("auto", "cuda") and _cuda_present():
            return "cuda"
        if choice in ("auto", "mps") and _mps_present():
            return "mps"
        return None

    # -- availability -----------------------------------------------------------------------------

    def requirements(self) -> list[Requirement]:
        missing = missing_modules(*_REQUIRED_MODULES)
        if self.config.device == "auto":
            no_device = "no GPU found (CUDA or Apple MPS); the CPU is used only when FLUX_LOCAL_DEVICE=cpu"
        else:
            no_device = f"FLUX_LOCAL_DEVICE={self.config.device} but that device is not present"
        return [
            Requirement(
                met=not missing,
                reason=f"{', '.join(missing)} not installed",
                steps=("Install the local extra: pip install 'imagegen-mcp[local]' (torch with CUDA for a GPU)",),
            ),
            Requirement(
                met=self._device() is not None,
                reason=no_device,
                steps=(
                    "Run on a machine with an NVIDIA GPU (CUDA) or Apple silicon (MPS), or set "
                    "FLUX_LOCAL_DEVICE=cpu to run on the CPU (slow: minutes per SDXL image; sd_turbo takes seconds)",
                ),
            ),
        ]

    def model_requirements(self, model: FluxModelConfig) -> list[Requirement]:
        if self.config.allow_download:
            return []
        problem = self.weights.missing(model)
        if problem is None:
            return []
        return [Requirement(met=False, reason=f"weights not on this machine: {problem.reason}", steps=problem.steps)]

    def new_model_defaults(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        return {**super().new_model_defaults(fields), **NEW_MODEL_DEFAULTS.get(str(fields.get("pipeline")), {})}

    def check_user_model(self, model: FluxModelConfig) -> str | None:
        for name in ("path", "base_path"):
            path = getattr(model, name)
            if path is not None and not path.exists():
                return f"{name}: {path} does not exist"
        problems = [f"loras: {lora.label}: {problem}" for lora in model.loras if (problem := lora_problem(lora))]
        return problems[0] if problems else None

    def lora_problem(self, lora: LoraSpec) -> str | None:
        return lora_problem(lora)

    def timeout_s(self, default: float) -> float:
        """Waiting for the device and a first load from disk count against a request's time too, and on the
        CPU an SDXL image takes minutes: never less than :data:`GPU_TIMEOUT_S` / :data:`CPU_TIMEOUT_S`."""
        return max(default, CPU_TIMEOUT_S if self._device() == "cpu" else GPU_TIMEOUT_S)

    # -- generation -------------------------------------------------------------------------------

    async def generate(self, request: GenerationRequest, model: FluxModelConfig, progress: Progress) -> ProviderResult:
        device = self._device()

        async def report_position(ahead: int) -> None:
            await progress.update(f"waiting for the {device} device: {ahead} generation(s) ahead")

        report, should_stop = _thread_callbacks(progress)
        async with self.queue.turn(report_position):
            outcome = await anyio.to_thread.run_sync(self._generate_in_thread, model, request, report, should_stop)
        if outcome is None:
            # Stopped because this request was cancelled: let that cancellation (or timeout) surface as itself.
            await anyio.lowlevel.checkpoint()
            raise GenerationCancelledError(f"The generation with {model.key} was stopped before it finished.")
        return ProviderResult(images=outcome.images, details=outcome.details)

    def _generate_in_thread(
        self, model: FluxModelConfig, request: GenerationRequest, report: Report, should_stop: ShouldStop
    ) -> Generation | None:
        if self.pipelines is None:
            from imagegen_mcp.providers.flux_local.pipeline import DevicePipelines

            device = self._device()
            assert device is not None
            dtype = "float32" if device == "cpu" else "float16"
            self.pipelines = DevicePipelines(device, dtype, self.config.max_pipelines, self.weights)
        return self.pipelines.generate(model, request, report, should_stop)

    async def aclose(self) -> None:
        """Unload every pipeline once the generation on the device (if any) has finished."""
        pipelines = self.pipelines
        if pipelines is None:
            return

        async def ignore_position(ahead: int) -> None:
            return None

        async with self.queue.turn(ignore_position):
            await anyio.to_thread.run_sync(pipelines.clear)


def _thread_callbacks(progress: Progress) -> tuple[Report, ShouldStop]:
    """Progress reporting and the cancellation check, for the worker thread of the current task."""
    cancelled = anyio.get_cancelled_exc_class()

    def report(message: str, fraction: float | None) -> None:
        # Cancelled while reporting: nothing to report to; should_stop() then ends the run.
        with contextlib.suppress(concurrent.futures.CancelledError, cancelled):
            anyio.from_thread.run(progress.update, message, fraction)

    def should_stop() -> bool:
        try:
            anyio.from_thread.check_cancelled()
        except cancelled:
            return True
        return False

    return report, should_stop
