"""The contract between the core and every image provider.

A provider module defines a frozen :class:`ModelConfig` subclass, its model registry and a
:class:`ProviderInfo`, and implements :class:`ImageProvider`. The core knows nothing else about it.
Availability is cheap and local (no network, no heavy import); connecting or loading happens on the first
:meth:`ImageProvider.generate` and is undone by :meth:`ImageProvider.aclose`.
"""

from __future__ import annotations

import functools
import importlib.util
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from imagegen_mcp.config import Settings

MODEL_KEY_PATTERN = r"^[a-z0-9][a-z0-9_.-]*$"


@dataclass(frozen=True)
class ProviderInfo:
    name: str
    display_name: str
    description: str
    default_model: str
    #: Lower runs earlier when the resolver orders providers; ties are broken by name.
    priority: int


class ModelCapabilities(BaseModel):
    """What an agent needs to know to call a model well (shown by ``list_models``)."""

    max_resolution: int
    default_width: int
    default_height: int
    supports_negative_prompt: bool
    default_steps: int | None
    default_guidance: float | None
    aspect_ratios: list[str]
    size_multiple: int


class ModelConfig(BaseModel):
    """Fields every model has. Providers subclass it with what their backend needs (required fields stay
    required: a registry entry that leaves one out fails at import, not at the first generation)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str = Field(pattern=MODEL_KEY_PATTERN)
    display_name: str
    description: str = ""
    #: ``None`` for models that take no step count or guidance (e.g. Gemini).
    default_steps: int | None = Field(ge=1, le=150)
    default_guidance: float | None = Field(ge=0, le=30)
    max_resolution: int = Field(ge=64, le=8192, description="Longest side in pixels.")
    default_width: int = 1024
    default_height: int = 1024
    size_multiple: int = Field(64, ge=1)
    supports_negative_prompt: bool
    default_negative_prompt: str | None = None
    #: The aspect ratios a ratio-based model accepts (``W:H``); empty for models that take pixel sizes.
    aspect_ratios: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _defaults_fit(self) -> Self:
        if max(self.default_width, self.default_height) > self.max_resolution:
            raise ValueError(f"default size {self.default_width}x{self.default_height} exceeds max_resolution")
        return self

    def capabilities(self) -> ModelCapabilities:
        return ModelCapabilities(
            max_resolution=self.max_resolution,
            default_width=self.default_width,
            default_height=self.default_height,
            supports_negative_prompt=self.supports_negative_prompt,
            default_steps=self.default_steps,
            default_guidance=self.default_guidance,
            aspect_ratios=list(self.aspect_ratios),
            size_multiple=self.size_multiple,
        )


class GenerationRequest(BaseModel):
    """A request resolved for one model: every value is final (sizes fit the model, the seed is chosen)."""

    model_config = ConfigDict(frozen=True)

    prompt: str
    negative_prompt: str | None
    width: int
    height: int
    #: The requested ratio (``W:H``) when the caller gave one, else ``None``.
    aspect_ratio: str | None
    steps: int | None
    guidance_scale: float | None
    #: Seed of the first image; image ``i`` uses ``seed + i`` unless the provider reports otherwise.
    seed: int
    count: int = Field(ge=1, le=4)


@dataclass(frozen=True)
class GeneratedImage:
    #: The encoded image (PNG preferred), or the same as base64 text when that is how the backend delivered it:
    #: the store decodes it in its worker thread, so megabytes of base64 never block the event loop.
    data: bytes | str
    mime_type: str
    #: The seed this image was actually made with, as the backend reports it.
    seed: int | None


@dataclass
class ProviderResult:
    images: list[GeneratedImage]
    #: In US dollars, when the provider reports it.
    cost: float | None = None
    #: What the provider changed about the request, in words an agent can pass on (e.g. a size mapping).
    adjustments: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Requirement:
    """One condition a provider needs: whether it holds, the reason given when not, the step that fixes it."""

    met: bool
    reason: str
    step: str


def sdk_requirement(module: str, sdk: str, extra: str) -> Requirement:
    """The provider's SDK is installed (checked without importing it)."""
    return Requirement(
        met=not missing_modules(module),
        reason=f"the {sdk} SDK is not installed",
        step=f"Install the {extra.capitalize()} extra: pip install 'imagegen-mcp[{extra}]'",
    )


ProgressSink = Callable[[float, float | None, str | None], Awaitable[None]]


class Progress:
    """Progress of one tool call, forwarded to the client when it asked for it.

    MCP requires the reported value to increase with every notification; this keeps it so across
    queue messages, steps and fallbacks, whatever the provider reports. Values are percent (0-100).
    """

    def __init__(self, sink: ProgressSink | None = None) -> None:
        self._sink = sink
        self._last = 0.0

    async def update(self, message: str, fraction: float | None = None) -> None:
        """Report ``message`` at ``fraction`` of the work (capped at 0.99: only the result says 'done')."""
        if self._sink is None:
            return
        value = 100.0 * min(max(fraction, 0.0), 0.99) if fraction is not None else self._last
        if value <= self._last:
            # Nudge forward without ever reaching 100 before the work is done.
            value = self._last + (100.0 - self._last) * 0.01
        self._last = value
        await self._sink(round(value, 4), 100.0, message)


class ImageProvider(ABC):
    """An image backend. Subclasses set ``info`` and ``models`` and implement the abstract methods."""

    info: ClassVar[ProviderInfo]
    models: ClassVar[Mapping[str, ModelConfig]]

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def requirements(self) -> list[Requirement]:
        """What this provider needs (an SDK, a key, ...), each with its reason and fix. Cheap: no network."""
        return []

    def unavailable_reason(self) -> str | None:
        """Why this provider cannot run now, or ``None``. Cheap: no network, no heavy import."""
        return next((need.reason for need in self.requirements() if not need.met), None)

    def setup_instructions(self) -> list[str]:
        """Steps a person follows to make this provider available."""
        return [need.step for need in self.requirements() if not need.met]

    def is_available(self) -> bool:
        return self.unavailable_reason() is None

    def model_unavailable_reason(self, model: ModelConfig) -> str | None:
        """Why one model cannot run while the provider can (e.g. its weights are missing), or ``None``.

        Shown by ``list_models``; a generation with such a model raises ``provider_unavailable`` itself, with
        the exact steps to fix it.
        """
        return None

    def timeout_s(self, default: float) -> float:
        """How long one generation may take before it is a ``provider_timeout`` (the server's by default)."""
        return default

    @abstractmethod
    async def generate(self, request: GenerationRequest, model: ModelConfig, progress: Progress) -> ProviderResult:
        """Generate ``request.count`` images; raise an :class:`~imagegen_mcp.errors.ImageGenError`."""

    async def aclose(self) -> None:
        """Release connections or pipelines opened by :meth:`generate`."""
        return None


def missing_modules(*modules: str) -> list[str]:
    """The modules of ``modules`` that cannot be imported, found without importing them."""
    return [module for module in modules if not _importable(module)]


@functools.cache
def _importable(module: str) -> bool:
    """Cached: availability is checked on every request, and installed packages do not change while the
    server runs (installing an extra needs a restart anyway, to import it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def registry(*configs: ModelConfig) -> dict[str, ModelConfig]:
    """Build a provider's model registry keyed by model key; a repeated key is a programming error."""
    keys = [config.key for config in configs]
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    if duplicates:
        raise ValueError(f"model keys defined twice: {', '.join(duplicates)}")
    return {config.key: config for config in configs}
