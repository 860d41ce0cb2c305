"""A provider defined outside the package, as a third-party plugin would be: it draws solid-colour PNGs.

Its behaviour is driven by its own settings (``PALETTE_*`` variables) so that the same class serves the
in-memory tests and the subprocess tests, where it is registered through an entry point.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from typing import Literal

import anyio
from PIL import Image
from pydantic import Field, SecretStr

from imagegen_mcp.config import EnvSettings, Settings
from imagegen_mcp.errors import (
    AuthenticationError,
    ContentBlockedError,
    ImageGenError,
    ProviderError,
    RateLimitedError,
)
from imagegen_mcp.providers.base import (
    GeneratedImage,
    GenerationRequest,
    ImageProvider,
    ModelConfig,
    Progress,
    ProviderInfo,
    ProviderResult,
    Requirement,
)

logger = logging.getLogger(__name__)

FailureMode = Literal["none", "auth", "rate_limited", "blocked", "server_error", "crash", "leaky"]


class PaletteSettings(EnvSettings):
    available: bool = Field(True, alias="PALETTE_AVAILABLE")
    fail: FailureMode = Field("none", alias="PALETTE_FAIL")
    delay_s: float = Field(0.0, ge=0, alias="PALETTE_DELAY_S")
    api_key: SecretStr | None = Field(None, alias="PALETTE_API_KEY")


class PaletteModelConfig(ModelConfig):
    channel: int = Field(ge=0, le=2, description="Which RGB channel carries the seed.")


def solid_png(width: int, height: int, seed: int, channel: int) -> bytes:
    color = [40, 40, 40]
    color[channel] = seed % 256
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), tuple(color)).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


FAILURES: dict[str, ImageGenError] = {
    "auth": AuthenticationError("key rejected", remediation=["Set PALETTE_KEY"]),
    "rate_limited": RateLimitedError("too many requests", retry_after_s=3),
    "blocked": ContentBlockedError("prompt blocked by the safety filter", remediation=["Rephrase the prompt"]),
    "server_error": ProviderError("upstream answered 503", retryable=True),
}


PALETTE_MODELS = (
    PaletteModelConfig(
        key="solid_red",
        display_name="Solid red",
        default_steps=2,
        default_guidance=1.0,
        max_resolution=2048,
        supports_negative_prompt=False,
        channel=0,
    ),
    PaletteModelConfig(
        key="solid_green",
        display_name="Solid green",
        default_steps=6,
        default_guidance=3.0,
        max_resolution=512,
        default_width=512,
        default_height=512,
        size_multiple=8,
        supports_negative_prompt=True,
        default_negative_prompt="noise",
        channel=1,
    ),
)


class PaletteProvider(ImageProvider[PaletteModelConfig]):
    info = ProviderInfo(
        name="palette",
        display_name="Palette (test)",
        description="Solid-colour images drawn locally.",
        default_model="solid_red",
        priority=5,
    )

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.config = settings.provider_settings(PaletteSettings)
        self.calls: list[GenerationRequest] = []
        self.closed = False

    def builtin_models(self) -> Sequence[PaletteModelConfig]:
        return PALETTE_MODELS

    def requirements(self) -> list[Requirement]:
        return [Requirement(self.config.available, "PALETTE_AVAILABLE is false", ("Set PALETTE_AVAILABLE=true",))]

    async def generate(
        self, request: GenerationRequest, model: PaletteModelConfig, progress: Progress
    ) -> ProviderResult:
        self.calls.append(request)
        if self.config.fail == "crash":
            raise RuntimeError("palette crashed")
        if self.config.fail == "leaky" and self.config.api_key is not None:
            # A careless backend that echoes the credential back: the server must scrub it.
            key = self.config.api_key.get_secret_value()
            logger.error("upstream rejected key %s", key)
            raise AuthenticationError(f"key {key} was rejected", remediation=[f"Replace {key}"])
        if self.config.fail != "none":
            raise FAILURES[self.config.fail]
        await progress.update("painting", 0.5)
        await anyio.sleep(self.config.delay_s)
        seeds = [request.seed_of(index) for index in range(request.count)]
        images = [
            GeneratedImage(solid_png(request.width, request.height, seed, model.channel), "image/png", seed)
            for seed in seeds
        ]
        return ProviderResult(images=images, cost=0.001 * request.count)

    async def aclose(self) -> None:
        self.closed = True


class BackupPaletteProvider(PaletteProvider):
    """A second provider of the same kind, to show fallback between two available providers."""

    info = ProviderInfo(
        name="backup",
        display_name="Backup palette (test)",
        description="Solid-colour images, second choice.",
        default_model="solid_blue",
        priority=6,
    )

    def builtin_models(self) -> Sequence[PaletteModelConfig]:
        return (
            PaletteModelConfig(
                key="solid_blue",
                display_name="Solid blue",
                default_steps=4,
                default_guidance=2.0,
                max_resolution=1024,
                supports_negative_prompt=False,
                channel=2,
            ),
        )

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.config = PaletteSettings(PALETTE_AVAILABLE=True)
