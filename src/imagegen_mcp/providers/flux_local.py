"""Local generation with diffusers pipelines (SDXL and SD class models) on a GPU, or the CPU when asked.

This module is what the server imports at start: settings, model configs, availability and the async side
of generation. It imports no torch or diffusers. The heavy half (:mod:`.flux_local_pipeline`) is imported
in the device's worker thread on the first generation; :mod:`.flux_local_weights` finds the weights on
disk and :mod:`.flux_local_queue` lines requests up for the device.

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
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Self

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
from pydantic import BaseModel, ConfigDict, Field, model_validator

from imagegen_mcp.config import EnvSettings, Settings
from imagegen_mcp.errors import GenerationCancelledError, ProviderUnavailableError
from imagegen_mcp.providers.base import (
    GenerationRequest,
    ImageProvider,
    ModelConfig,
    Progress,
    ProviderInfo,
    ProviderResult,
    missing_modules,
    registry,
)
from imagegen_mcp.providers.flux_local_queue import DeviceQueue
from imagegen_mcp.providers.flux_local_weights import WeightsLocator

if TYPE_CHECKING:
    from imagegen_mcp.providers.flux_local_pipeline import DevicePipelines, Generation, Report, ShouldStop

DeviceChoice = Literal["auto", "cuda", "mps", "cpu"]
PipelineType = Literal["sdxl", "sd"]

#: The base model whose configs and tokenizers a single-file checkpoint of each type is assembled with.
BASE_REPOS: dict[PipelineType, str] = {
    "sdxl": "stabilityai/stable-diffusion-xl-base-1.0",
    "sd": "stable-diffusion-v1-5/stable-diffusion-v1-5",
}
CHECKPOINT_SUFFIXES = (".safetensors", ".ckpt")
#: Seconds one generation may take, waiting for the device and a first load from disk included.
GPU_TIMEOUT_S = 300.0
CPU_TIMEOUT_S = 1800.0
_REQUIRED_MODULES = ("torch", "diffusers", "transformers", "huggingface_hub")


class FluxLocalSettings(EnvSettings):
    device: DeviceChoice = Field("auto", alias="FLUX_LOCAL_DEVICE")
    allow_download: bool = Field(False, alias="FLUX_LOCAL_ALLOW_DOWNLOAD")
    max_pipelines: int = Field(1, ge=1, le=8, alias="FLUX_LOCAL_MAX_PIPELINES")
    cache_dir: Path | None = Field(
        None,
        alias="FLUX_LOCAL_CACHE_DIR",
        description="Hugging Face hub cache folder to load from and download to (default: huggingface_hub's, "
        "which follows HF_HOME and HF_HUB_CACHE).",
    )


class SchedulerConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    class_name: str = Field(description="A diffusers scheduler class, e.g. 'EulerDiscreteScheduler'.")
    config: dict[str, Any] = Field(default_factory=dict)


class FluxModelConfig(ModelConfig):
    """A local diffusers model. Its weights come from exactly one source:

    * ``repo_id`` and ``filename``: a single-file checkpoint in a Hugging Face repository (the seed's models);
    * ``repo_id`` alone: a diffusers-format repository;
    * ``path``: a local single-file checkpoint (``.safetensors``, ``.ckpt``) or diffusers-format folder.

    A single-file checkpoint holds the weights only; the pipeline is assembled with the configs and
    tokenizers of its base model: ``base_repo_id`` (a Hugging Face repository), ``base_path`` (a local
    diffusers-format folder), or by default the pipeline type's base model (:data:`BASE_REPOS`).
    """

    pipeline: PipelineType
    repo_id: str | None = Field(None, description="Hugging Face repository holding the weights.")
    filename: str | None = Field(None, description="Single-file checkpoint inside repo_id.")
    path: Path | None = Field(None, description="Local single-file checkpoint or diffusers-format folder.")
    base_repo_id: str | None = Field(None, description="Base model repository for a single-file checkpoint.")
    base_path: Path | None = Field(None, description="Local base model folder for a single-file checkpoint.")
    scheduler: SchedulerConfig
    default_steps: int = Field(ge=1, le=150)
    default_guidance: float = Field(ge=0, le=30)
    supports_negative_prompt: bool = True
    max_resolution: int = 1536

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.repo_id is None) == (self.path is None):
            raise ValueError("give exactly one weights source: repo_id (with or without filename) or path")
        if self.filename is not None and self.repo_id is None:
            raise ValueError("filename names a file inside repo_id; a local file goes in path")
        if self.base_repo_id is not None and self.base_path is not None:
            raise ValueError("give at most one of base_repo_id and base_path")
        if not self.is_single_file and (self.base_repo_id is not None or self.base_path is not None):
            raise ValueError("base_repo_id and base_path only apply to single-file checkpoints")
        return self

    @property
    def is_single_file(self) -> bool:
        return self.filename is not None or (self.path is not None and self.path.suffix in CHECKPOINT_SUFFIXES)

    def base_repo(self) -> str:
        return self.base_repo_id or BASE_REPOS[self.pipeline]


FLUX_LOCAL_MODELS = registry(
    FluxModelConfig(
        key="lightning_4step",
        display_name="SDXL-Lightning 4-step",
        description="ByteDance SDXL-Lightning distilled to 4 steps: fast SDXL quality on a GPU.",
        pipeline="sdxl",
        repo_id="ByteDance/SDXL-Lightning",
        filename="sdxl_lightning_4step.safetensors",
        default_steps=4,
        default_guidance=0.0,
        scheduler=SchedulerConfig(
            class_name="EulerDiscreteScheduler",
            config={"timestep_spacing": "trailing", "prediction_type": "epsilon"},
        ),
    ),
    FluxModelConfig(
        key="lightning_8step",
        display_name="SDXL-Lightning 8-step",
        description="ByteDance SDXL-Lightning distilled to 8 steps: a little slower, more detail than 4-step.",
        pipeline="sdxl",
        repo_id="ByteDance/SDXL-Lightning",
        filename="sdxl_lightning_8step.safetensors",
        default_steps=8,
        default_guidance=0.0,
        scheduler=SchedulerConfig(
            class_name="EulerDiscreteScheduler",
            config={"timestep_spacing": "trailing", "prediction_type": "epsilon"},
        ),
    ),
    FluxModelConfig(
        key="juggernaut_xi",
        display_name="Juggernaut XI",
        description="RunDiffusion Juggernaut XI v11: photorealistic SDXL, 30 steps.",
        pipeline="sdxl",
        repo_id="RunDiffusion/Juggernaut-XI-v11",
        filename="Juggernaut-XI-byRunDiffusion.safetensors",
        default_steps=30,
        default_guidance=4.5,
        default_negative_prompt="fake eyes, bad hands, deformed eyes",
        scheduler=SchedulerConfig(
            class_name="DPMSolverMultistepScheduler",
            config={"algorithm_type": "sde-dpmsolver++", "solver_type": "midpoint"},
        ),
    ),
    FluxModelConfig(
        key="sd_turbo",
        display_name="SD-Turbo",
        description="Stability AI SD-Turbo: one step at 512x512; the model that is practical on a CPU.",
        pipeline="sd",
        repo_id="stabilityai/sd-turbo",
        default_steps=1,
        default_guidance=0.0,
        default_width=512,
        default_height=512,
        max_resolution=512,
        # Trained without classifier-free guidance: a negative prompt would have no effect.
        supports_negative_prompt=False,
        scheduler=SchedulerConfig(class_name="EulerDiscreteScheduler", config={"timestep_spacing": "trailing"}),
    ),
)


@functools.cache
def _cuda_present() -> bool:
    """An NVIDIA driver is loaded; checked without importing torch (and once: it is asked on every request)."""
    return os.path.exists("/proc/driver/nvidia/version") or shutil.which("nvidia-smi") is not None


def _mps_present() -> bool:
    return sys.platform == "darwin" and platform.machine() == "arm64"


class FluxLocalProvider(ImageProvider):
    info = ProviderInfo(
        name="flux_local",
        display_name="Local diffusers",
        description="SDXL-class models run locally with diffusers: private, no per-image cost; needs a GPU.",
        default_model="lightning_4step",
        priority=2,
    )
    models = FLUX_LOCAL_MODELS

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.config = settings.provider_settings(FluxLocalSettings)
        self.weights = WeightsLocator(self.config.cache_dir, allow_download=self.config.allow_download)
        self.queue = DeviceQueue()
        #: The loaded pipelines; created in the worker thread by the first generation.
        self.pipelines: DevicePipelines | None = None

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

    def unavailable_reason(self) -> str | None:
        missing = missing_modules(*_REQUIRED_MODULES)
        if missing:
            return f"{', '.join(missing)} not installed"
        if self._device() is None:
            if self.config.device == "auto":
                return "no GPU found (CUDA or Apple MPS); the CPU is used only when FLUX_LOCAL_DEVICE=cpu"
            return f"FLUX_LOCAL_DEVICE={self.config.device} but that device is not present"
        if self._no_weights():
            default = self.models[self.info.default_model]
            problem = self.weights.missing(self._flux_model(default))
            assert problem is not None
            return (
                "no model's weights are on this machine and FLUX_LOCAL_ALLOW_DOWNLOAD is off "
                f"(default model {default.key}: {problem.reason})"
            )
        return None

    def setup_instructions(self) -> list[str]:
        steps = []
        if missing_modules(*_REQUIRED_MODULES):
            steps.append("Install the local extra: pip install 'imagegen-mcp[local]' (torch with CUDA for a GPU)")
        if self._device() is None:
            steps.append(
                "Run on a machine with an NVIDIA GPU (CUDA) or Apple silicon (MPS), or set "
                "FLUX_LOCAL_DEVICE=cpu to run on the CPU (slow: minutes per SDXL image; sd_turbo takes seconds)"
            )
        elif not steps and self._no_weights():
            problem = self.weights.missing(self._flux_model(self.models[self.info.default_model]))
            assert problem is not None
            steps += problem.steps
        return steps

    def model_unavailable_reason(self, model: ModelConfig) -> str | None:
        if self.config.allow_download:
            return None
        problem = self.weights.missing(self._flux_model(model))
        return None if problem is None else f"weights not on this machine: {problem.reason}"

    def _no_weights(self) -> bool:
        if self.config.allow_download:
            return False
        return all(self.weights.missing(self._flux_model(model)) is not None for model in self.models.values())

    def timeout_s(self, default: float) -> float:
        """Waiting for the device and a first load from disk count against a request's time too, and on the
        CPU an SDXL image takes minutes: never less than :data:`GPU_TIMEOUT_S` / :data:`CPU_TIMEOUT_S`."""
        return max(default, CPU_TIMEOUT_S if self._device() == "cpu" else GPU_TIMEOUT_S)

    # -- generation -------------------------------------------------------------------------------

    async def generate(self, request: GenerationRequest, model: ModelConfig, progress: Progress) -> ProviderResult:
        flux_model = self._flux_model(model)
        if not self.config.allow_download:
            problem = self.weights.missing(flux_model)
            if problem is not None:
                raise ProviderUnavailableError(
                    f"The weights of {model.key} are not on this machine: {problem.reason}.",
                    remediation=problem.steps,
                )
        device = self._device()

        async def report_position(ahead: int) -> None:
            await progress.update(f"waiting for the {device} device: {ahead} generation(s) ahead")

        report, should_stop = _thread_callbacks(progress)
        async with self.queue.turn(report_position):
            outcome = await anyio.to_thread.run_sync(self._generate_in_thread, flux_model, request, report, should_stop)
        if outcome is None:
            # Stopped because this request was cancelled: let that cancellation (or timeout) surface as itself.
            await anyio.lowlevel.checkpoint()
            raise GenerationCancelledError(f"The generation with {model.key} was stopped before it finished.")
        return ProviderResult(images=outcome.images, details=outcome.details)

    def _generate_in_thread(
        self, model: FluxModelConfig, request: GenerationRequest, report: Report, should_stop: ShouldStop
    ) -> Generation | None:
        if self.pipelines is None:
            from imagegen_mcp.providers.flux_local_pipeline import DevicePipelines

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

    def _flux_model(self, model: ModelConfig) -> FluxModelConfig:
        if not isinstance(model, FluxModelConfig):
            raise TypeError(f"{model.key} is not a flux_local model")
        return model


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
