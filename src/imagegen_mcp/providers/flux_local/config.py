"""flux_local's settings, model config and built-in models: plain data, importing no other flux_local module
(and no torch), so every other module of the provider can import it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from imagegen_mcp.config import EnvSettings
from imagegen_mcp.providers.base import ImageInputs, ModelConfig

DeviceChoice = Literal["auto", "cuda", "mps", "cpu"]
PipelineType = Literal["sdxl", "sd"]

#: The base model whose configs and tokenizers a single-file checkpoint of each type is assembled with.
BASE_REPOS: dict[PipelineType, str] = {
    "sdxl": "stabilityai/stable-diffusion-xl-base-1.0",
    "sd": "stable-diffusion-v1-5/stable-diffusion-v1-5",
}
CHECKPOINT_SUFFIXES = (".safetensors", ".ckpt")


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
    #: Image-to-image and inpainting come from the same weights (``from_pipe``); references need an adapter.
    inputs: ImageInputs = ImageInputs(image_to_image=True, inpaint=True)
    supports_loras: bool = True

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


#: What a config entry for a new model of each pipeline type gets unless it says otherwise: the base model's
#: own scheduler (an empty override) and the step count, guidance and size its model card recommends.
NEW_MODEL_DEFAULTS: dict[str, dict[str, Any]] = {
    "sdxl": {
        "scheduler": {"class_name": "EulerDiscreteScheduler"},
        "default_steps": 30,
        "default_guidance": 5.0,
        "default_width": 1024,
        "default_height": 1024,
    },
    "sd": {
        "scheduler": {"class_name": "PNDMScheduler"},
        "default_steps": 30,
        "default_guidance": 7.5,
        "default_width": 512,
        "default_height": 512,
        "max_resolution": 1024,
    },
}

_LIGHTNING_SCHEDULER = SchedulerConfig(
    class_name="EulerDiscreteScheduler", config={"timestep_spacing": "trailing", "prediction_type": "epsilon"}
)

FLUX_LOCAL_MODELS = (
    FluxModelConfig(
        key="lightning_4step",
        display_name="SDXL-Lightning 4-step",
        description="ByteDance SDXL-Lightning distilled to 4 steps: fast SDXL quality on a GPU.",
        pipeline="sdxl",
        repo_id="ByteDance/SDXL-Lightning",
        filename="sdxl_lightning_4step.safetensors",
        default_steps=4,
        default_guidance=0.0,
        scheduler=_LIGHTNING_SCHEDULER,
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
        scheduler=_LIGHTNING_SCHEDULER,
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
