"""Runware: cloud inference over the ``runware`` SDK's WebSocket connection."""

from __future__ import annotations

from pydantic import Field, SecretStr

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

DEFAULT_NEGATIVE_PROMPT = "worst quality, low quality, blurry"
DEFAULT_URL = "wss://ws-api.runware.ai/v1"


class RunwareSettings(EnvSettings):
    api_key: SecretStr | None = Field(None, alias="RUNWARE_API_KEY")
    url: str = Field(DEFAULT_URL, alias="RUNWARE_URL", pattern=r"^wss?://")


class RunwareModelConfig(ModelConfig):
    air: str = Field(description="Runware's AIR identifier of the model, e.g. 'runware:100@1'.")
    max_resolution: int = 1024
    supports_negative_prompt: bool = True
    default_negative_prompt: str | None = DEFAULT_NEGATIVE_PROMPT


RUNWARE_MODELS = registry(
    RunwareModelConfig(
        key="juggernaut_pro",
        display_name="Juggernaut Pro (FLUX)",
        description="Photorealistic, high detail; the best quality of the Runware models.",
        air="rundiffusion:130@100",
        default_steps=20,
        default_guidance=7.5,
    ),
    RunwareModelConfig(
        key="juggernaut_lightning",
        display_name="Juggernaut Lightning",
        description="Fast 4-step photorealistic model.",
        air="rundiffusion:110@101",
        default_steps=4,
        default_guidance=1.0,
    ),
    RunwareModelConfig(
        key="flux_schnell",
        display_name="FLUX.1 [schnell]",
        description="Fast general-purpose FLUX model, good prompt adherence.",
        air="runware:100@1",
        default_steps=4,
        default_guidance=3.5,
    ),
    RunwareModelConfig(
        key="hidream_fast",
        display_name="HiDream-I1 Fast",
        description="HiDream-I1 fast variant; strong at text and illustration.",
        air="runware:97@3",
        default_steps=8,
        default_guidance=7.0,
    ),
)


class RunwareProvider(ImageProvider):
    info = ProviderInfo(
        name="runware",
        display_name="Runware",
        description="Cloud inference on Runware (FLUX, Juggernaut, HiDream); fast and cheap per image.",
        default_model="juggernaut_pro",
        priority=1,
    )
    models = RUNWARE_MODELS

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.config = settings.provider_settings(RunwareSettings)

    def unavailable_reason(self) -> str | None:
        if missing_modules("runware"):
            return "the runware SDK is not installed"
        if self.config.api_key is None:
            return "RUNWARE_API_KEY is not set"
        return None

    def setup_instructions(self) -> list[str]:
        steps = []
        if missing_modules("runware"):
            steps.append("Install the Runware extra: pip install 'imagegen-mcp[runware]'")
        if self.config.api_key is None:
            steps.append(
                "Create an API key at https://my.runware.ai/keys and set RUNWARE_API_KEY in the server's "
                "environment (the 'env' block of your MCP client config)"
            )
        return steps

    async def generate(self, request: GenerationRequest, model: ModelConfig, progress: Progress) -> ProviderResult:
        raise ProviderUnavailableError(
            "Runware generation is not built yet", provider=self.info.name, model=model.key
        )
