"""Google Gemini image models through ``google-genai``."""

from __future__ import annotations

from pydantic import Field, SecretStr, model_validator

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

#: The aspect ratios the Gemini image models accept.
GEMINI_ASPECT_RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")


class GeminiSettings(EnvSettings):
    gemini_api_key: SecretStr | None = Field(None, alias="GEMINI_API_KEY")
    google_api_key: SecretStr | None = Field(None, alias="GOOGLE_API_KEY")
    base_url: str | None = Field(None, alias="GEMINI_BASE_URL", pattern=r"^https?://")

    @property
    def api_key(self) -> SecretStr | None:
        return self.gemini_api_key or self.google_api_key


class GeminiModelConfig(ModelConfig):
    api_model: str = Field(description="The model name the Gemini API knows, e.g. 'gemini-2.5-flash-image'.")
    default_steps: int | None = None
    default_guidance: float | None = None
    supports_negative_prompt: bool = False
    size_multiple: int = 1
    aspect_ratios: tuple[str, ...] = GEMINI_ASPECT_RATIOS

    @model_validator(mode="after")
    def _ratios_known(self) -> GeminiModelConfig:
        unknown = set(self.aspect_ratios) - set(GEMINI_ASPECT_RATIOS)
        if unknown:
            raise ValueError(f"unsupported aspect ratios: {sorted(unknown)}")
        return self


GEMINI_MODELS = registry(
    GeminiModelConfig(
        key="gemini_flash_image",
        display_name="Gemini 2.5 Flash Image",
        description="Fast image generation and editing from Gemini; follows long prompts well.",
        api_model="gemini-2.5-flash-image",
        max_resolution=1344,
    ),
    GeminiModelConfig(
        key="gemini_pro_image",
        display_name="Gemini 3 Pro Image (preview)",
        description="Gemini's highest-quality image model: legible text, complex layouts; slower, pricier.",
        api_model="gemini-3-pro-image-preview",
        max_resolution=2048,
    ),
)


class GeminiProvider(ImageProvider):
    info = ProviderInfo(
        name="gemini",
        display_name="Google Gemini",
        description="Gemini image models through the Gemini API; aspect-ratio based sizes.",
        default_model="gemini_flash_image",
        priority=3,
    )
    models = GEMINI_MODELS

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.config = settings.provider_settings(GeminiSettings)

    def unavailable_reason(self) -> str | None:
        if missing_modules("google.genai"):
            return "the google-genai SDK is not installed"
        if self.config.api_key is None:
            return "neither GEMINI_API_KEY nor GOOGLE_API_KEY is set"
        return None

    def setup_instructions(self) -> list[str]:
        steps = []
        if missing_modules("google.genai"):
            steps.append("Install the Gemini extra: pip install 'imagegen-mcp[gemini]'")
        if self.config.api_key is None:
            steps.append(
                "Create a key at https://aistudio.google.com/apikey and set GEMINI_API_KEY in the server's "
                "environment; image models need a project with billing enabled (their free-tier quota is 0)"
            )
        return steps

    async def generate(self, request: GenerationRequest, model: ModelConfig, progress: Progress) -> ProviderResult:
        raise ProviderUnavailableError("Gemini generation is not built yet", provider=self.info.name, model=model.key)
