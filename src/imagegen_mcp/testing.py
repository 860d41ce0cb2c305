"""A scriptable provider for tests: the server's own, and those of people who write providers or embed the server.

:class:`FunctionProvider` puts a plain async function where a backend would be, in the way of httpx's
``MockTransport``: script a success, a failure of any class or a slow answer inline, and read what the
provider was asked (:attr:`FunctionProvider.calls`)::

    provider = FunctionProvider(fails_with(RateLimitedError("slow down", retry_after_s=3)), name="flaky")
    backup = FunctionProvider(draws_images, name="backup")
    server = build_server(settings, providers=[provider, backup])

It is a real :class:`~imagegen_mcp.providers.base.ImageProvider`: the resolver, the fallback rules, the store
and the MCP layer treat it exactly as they treat the built-in providers.
"""

from __future__ import annotations

import io
import random
from collections.abc import Awaitable, Callable, Sequence

import anyio
from PIL import Image, ImageDraw, ImageFilter

from imagegen_mcp.config import Settings
from imagegen_mcp.errors import ImageGenError
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


class FunctionModelConfig(ModelConfig):
    """A model of a :class:`FunctionProvider`; every field has a default, so ``FunctionModelConfig(key="x")``
    is a complete model (1024 px, pixel sizes, steps 4 and guidance 1.0, negative prompts)."""

    display_name: str = "Function model"
    default_steps: int | None = 4
    default_guidance: float | None = 1.0
    max_resolution: int = 2048
    supports_negative_prompt: bool = True


#: What a :class:`FunctionProvider` calls for each generation.
GenerateFunction = Callable[[GenerationRequest, FunctionModelConfig, Progress], Awaitable[ProviderResult]]


class FunctionProvider(ImageProvider[FunctionModelConfig]):
    """A provider whose generations are ``fn(request, model, progress)``.

    ``requirements`` are reported as they are given (an unmet one makes the provider unavailable); ``paid``
    says whether IMAGEGEN_DAILY_BUDGET_USD applies to it.
    """

    def __init__(
        self,
        fn: GenerateFunction | None = None,
        *,
        name: str = "function",
        models: Sequence[FunctionModelConfig] = (),
        priority: int = 10,
        requirements: Sequence[Requirement] = (),
        paid: bool = False,
        settings: Settings | None = None,
    ) -> None:
        self._models = tuple(models) or (FunctionModelConfig(key=f"{name}_model", display_name=f"{name} model"),)
        self.info = ProviderInfo(
            name=name,
            display_name=f"{name} (function)",
            description="Images made by a function, for tests.",
            default_model=self._models[0].key,
            priority=priority,
            paid=paid,
        )
        self._fn = fn or draws_images
        self._requirements = tuple(requirements)
        #: Every request this provider was asked to run, in order.
        self.calls: list[GenerationRequest] = []
        self.closed = False
        super().__init__(settings or Settings.load({}))

    def builtin_models(self) -> Sequence[FunctionModelConfig]:
        return self._models

    def requirements(self) -> Sequence[Requirement]:
        return self._requirements

    async def generate(
        self, request: GenerationRequest, model: FunctionModelConfig, progress: Progress
    ) -> ProviderResult:
        self.calls.append(request)
        return await self._fn(request, model, progress)

    async def aclose(self) -> None:
        self.closed = True


def unmet(reason: str, *steps: str) -> Requirement:
    """A requirement that does not hold, for an unavailable :class:`FunctionProvider`."""
    return Requirement(met=False, reason=reason, steps=steps)


async def draws_images(request: GenerationRequest, model: FunctionModelConfig, progress: Progress) -> ProviderResult:
    """Photo-like images of the requested size, one per seed (the same seed draws the same image)."""
    await progress.update("drawing", 0.5)
    images = [
        GeneratedImage(data=photo_like_png(request.width, request.height, seed), mime_type="image/png", seed=seed)
        for seed in (request.seed_of(index) for index in range(request.count))
    ]
    return ProviderResult(images=images)


def fails_with(error: ImageGenError) -> GenerateFunction:
    """A generation that raises ``error`` (the same instance every time, as a real backend might)."""

    async def fail(request: GenerationRequest, model: FunctionModelConfig, progress: Progress) -> ProviderResult:
        raise error

    return fail


def slow(seconds: float, then: GenerateFunction = draws_images) -> GenerateFunction:
    """A generation that takes ``seconds`` before it does what ``then`` does."""

    async def wait(request: GenerationRequest, model: FunctionModelConfig, progress: Progress) -> ProviderResult:
        await anyio.sleep(seconds)
        return await then(request, model, progress)

    return wait


def photo_like_png(width: int, height: int, seed: int) -> bytes:
    """A PNG with the statistics of a photograph (a smooth scene of overlapping shapes plus sensor-like noise in
    every channel), not a flat colour: it compresses and decodes like a real result, which matters wherever
    bytes or time are measured. The same arguments always give the same bytes."""
    buffer = io.BytesIO()
    photo_like(width, height, seed).save(buffer, format="PNG")
    return buffer.getvalue()


def photo_like(width: int, height: int, seed: int) -> Image.Image:
    rng = random.Random(seed)
    scene = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    draw = ImageDraw.Draw(scene)
    for _ in range(60):
        x, y = rng.randrange(width), rng.randrange(height)
        radius = rng.randrange(max(1, width // 40), max(2, width // 5))
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=tuple(rng.randrange(256) for _ in range(3)))
    scene = scene.filter(ImageFilter.GaussianBlur(width / 200))
    # Texture at a quarter of the resolution (survives downscaling, like foliage or fabric), then fine grain:
    # a 1024x1024 PNG of about 2.2 MB, and about 57 KB as a 512 px JPEG at quality 80, as photographs are.
    small = (max(1, width // 4), max(1, height // 4))
    texture = Image.frombytes("RGB", small, rng.randbytes(3 * small[0] * small[1])).resize(
        (width, height), Image.Resampling.BICUBIC
    )
    grain = Image.frombytes("RGB", (width, height), rng.randbytes(3 * width * height))
    return Image.blend(Image.blend(scene, texture, 0.3), grain, 0.1)
