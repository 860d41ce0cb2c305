"""Local generation with diffusers pipelines (SDXL and SD class models) on a GPU, or the CPU when asked."""

from __future__ import annotations

import os
import platform
import shutil
import sys
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from imagegen_mcp.config import EnvSettings, Settings
from imagegen_mcp.errors import ProviderUnavailableError
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

DeviceChoice = Literal["auto", "cuda", "mps", "cpu"]
PipelineType = Literal["sdxl", "sd"]


class FluxLocalSettings(EnvSettings):
    device: DeviceChoice = Field("auto", alias="FLUX_LOCAL_DEVICE")
    allow_download: bool = Field(False, alias="FLUX_LOCAL_ALLOW_DOWNLOAD")
    max_pipelines: int = Field(1, ge=1, le=8, alias="FLUX_LOCAL_MAX_PIPELINES")


class SchedulerConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    class_name: str = Field(description="A diffusers scheduler class, e.g. 'EulerDiscreteScheduler'.")
    config: dict[str, Any] = Field(default_factory=dict)


class FluxModelConfig(ModelConfig):
    pipeline: PipelineType
    repo_id: str | None = Field(None, description="Hugging Face repository holding the weights.")
    filename: str | None = Field(None, description="Single-file checkpoint inside repo_id.")
    scheduler: SchedulerConfig
    supports_negative_prompt: bool = True
    max_resolution: int = 1536


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
)


def _cuda_present() -> bool:
    """An NVIDIA driver is loaded; checked without importing torch."""
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

    def _device(self) -> str | None:
        choice = self.config.device
        if choice == "cpu":
            return "cpu"
        if choice in ("auto", "cuda") and _cuda_present():
            return "cuda"
        if choice in ("auto", "mps") and _mps_present():
            return "mps"
        return None

    def unavailable_reason(self) -> str | None:
        missing = missing_modules("torch", "diffusers", "transformers")
        if missing:
            return f"{', '.join(missing)} not installed"
        if self._device() is None:
            if self.config.device == "auto":
                return "no GPU found (CUDA or Apple MPS); the CPU is used only when FLUX_LOCAL_DEVICE=cpu"
            return f"FLUX_LOCAL_DEVICE={self.config.device} but that device is not present"
        return None

    def setup_instructions(self) -> list[str]:
        steps = []
        if missing_modules("torch", "diffusers", "transformers"):
            steps.append("Install the local extra: pip install 'imagegen-mcp[local]' (torch with CUDA for a GPU)")
        if self._device() is None:
            steps.append(
                "Run on a machine with an NVIDIA GPU (CUDA) or Apple silicon (MPS), or set "
                "FLUX_LOCAL_DEVICE=cpu to run on the CPU (slow: minutes per SDXL image)"
            )
        return steps

    async def generate(self, request: GenerationRequest, model: ModelConfig, progress: Progress) -> ProviderResult:
        raise ProviderUnavailableError(
            "Local generation is not built yet", provider=self.info.name, model=model.key
        )
