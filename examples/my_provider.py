"""A minimal image provider: the README's "Adding a provider" guide as a file that runs.

    python examples/my_provider.py   # generates one image through the server's core, no key needed

It draws a gradient, but has everything a real provider has: typed model config and settings, a requirement
with the steps that fix it, progress, an error that lets the server fall back, and a lazily opened client.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence

import anyio
from PIL import Image
from pydantic import Field, SecretStr

from imagegen_mcp.config import EnvSettings, Settings
from imagegen_mcp.errors import ProviderError
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


class GradientSettings(EnvSettings):
    """The provider's own settings, read from the same environment (or config file) as the server's."""

    api_key: SecretStr | None = Field(None, alias="GRADIENT_API_KEY")


class GradientModel(ModelConfig):
    """What this backend needs to know about a model, beyond the fields every model has."""

    colour: tuple[int, int, int]
    max_resolution: int = 1024
    supports_negative_prompt: bool = False


class GradientProvider(ImageProvider[GradientModel]):
    info = ProviderInfo(
        name="gradient",
        display_name="Gradient",
        description="Draws gradients; an example provider.",
        default_model="sunset",
        priority=50,
    )

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.config = settings.provider_settings(GradientSettings)

    def builtin_models(self) -> Sequence[GradientModel]:
        return [
            GradientModel(
                key="sunset", display_name="Sunset", colour=(250, 120, 40), default_steps=1, default_guidance=None
            )
        ]

    def requirements(self) -> Sequence[Requirement]:
        # Cheap and local: no network, no heavy import. An unmet requirement makes the provider unavailable
        # with this reason, and list_providers shows the steps.
        return [
            Requirement(
                met=self.config.api_key is not None,
                reason="GRADIENT_API_KEY is not set",
                steps=("Set GRADIENT_API_KEY in the server's environment",),
            )
        ]

    async def generate(self, request: GenerationRequest, model: GradientModel, progress: Progress) -> ProviderResult:
        await progress.update("drawing", 0.5)
        if request.prompt == "fail":
            # Retryable provider errors let the server fall back to the next provider (auto mode).
            raise ProviderError("the gradient service answered 503", retryable=True, remediation=["Try again"])
        images = []
        for index in range(request.count):
            seed = request.seed_of(index)  # wraps at MAX_SEED, so every reported seed can be reused
            image = Image.linear_gradient("L").resize((request.width, request.height)).convert("RGB")
            image = Image.blend(image, Image.new("RGB", image.size, model.colour), 0.5)
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            images.append(GeneratedImage(data=buffer.getvalue(), mime_type="image/png", seed=seed))
        return ProviderResult(images=images, cost=0.0)


async def main() -> None:
    from imagegen_mcp.catalog import Catalog
    from imagegen_mcp.requests import ImageRequest
    from imagegen_mcp.service import ImageService

    os.environ.setdefault("GRADIENT_API_KEY", "example")
    settings = Settings.load()
    service = ImageService(settings, Catalog([GradientProvider(settings)]))
    try:
        result = await service.generate(ImageRequest(prompt="a sunset", width=256, height=256))
    finally:
        await service.aclose()
    print(result.images[0].stored.path)


if __name__ == "__main__":
    anyio.run(main)
