"""The contract between the core and every image provider.

A provider module defines a frozen :class:`ModelConfig` subclass ``M``, its built-in models and a
:class:`ProviderInfo`, and implements :class:`ImageProvider` ``[M]``. The instance holds its models, so models
can be added (built-ins plus the user's) without touching provider code. The core knows nothing else about it.

Availability is one value, :class:`Availability`, computed by :meth:`ImageProvider.check` from the provider's
:class:`Requirement` list (and per model, where a model needs more, such as its weights). It is cheap and local
(no network, no heavy import) and taken once per request or listing as a snapshot. Connecting or loading happens
on the first :meth:`ImageProvider.generate` and is undone by :meth:`ImageProvider.aclose`.
"""

from __future__ import annotations

import binascii
import functools
import importlib.util
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Self, TypeVar

import anyio.to_thread
import pybase64
from pydantic import BaseModel, ConfigDict, Field, model_validator

from imagegen_mcp.config import Settings
from imagegen_mcp.errors import ConfigError, ModelRetiredError, ProviderError

MODEL_KEY_PATTERN = r"^[a-z0-9][a-z0-9_.-]*$"
#: The largest seed any provider takes (a signed 32-bit integer, what the vendors accept).
MAX_SEED = 2**31 - 1


def seed_at(seed: int, index: int) -> int:
    """The seed of image ``index`` of a request whose first image uses ``seed``.

    Wraps at :data:`MAX_SEED`, so every reported seed can be passed back to reproduce its image alone.
    """
    return (seed + index) % (MAX_SEED + 1)


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

    #: The field holding the id the vendor knows the model by (``IMAGEGEN_MODEL_IDS`` can change it).
    vendor_id_field: ClassVar[str | None] = None

    @property
    def vendor_id(self) -> str | None:
        return str(getattr(self, self.vendor_id_field)) if self.vendor_id_field else None

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


M = TypeVar("M", bound=ModelConfig)


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
    #: Seed of the first image; image ``i`` uses :meth:`seed_of` ``(i)`` unless the provider reports otherwise.
    seed: int = Field(ge=0, le=MAX_SEED)
    count: int = Field(ge=1, le=4)

    def seed_of(self, index: int) -> int:
        return seed_at(self.seed, index)


@dataclass(frozen=True)
class RetiredModel:
    """A model name the vendor no longer serves, and the model of the catalog that replaces it."""

    replacement: str
    #: What happened, for the error text (e.g. "Google shut gemini-2.5-flash-image down on 2 October 2026").
    note: str


@dataclass(frozen=True)
class GeneratedImage:
    #: The encoded image (PNG preferred).
    data: bytes
    mime_type: str
    #: The seed this image was actually made with.
    seed: int


async def decode_base64_images(provider: str, payloads: Sequence[tuple[str, str, int]]) -> list[GeneratedImage]:
    """Images delivered as base64 text (``(base64, mime type, seed)`` each), decoded in a worker thread so that
    megabytes of base64 never block the event loop. Text that is not base64 is the vendor's fault: a
    retryable :class:`~imagegen_mcp.errors.ProviderError`."""

    def decode() -> list[GeneratedImage]:
        images = []
        for index, (text, mime_type, seed) in enumerate(payloads):
            try:
                data = pybase64.b64decode(text, validate=True)
            except (binascii.Error, ValueError):
                raise ProviderError(
                    f"{provider} sent image {index + 1} as data that is not valid base64.",
                    provider=provider,
                    retryable=True,
                    remediation=["Try again; if it keeps happening, check the provider's endpoint setting"],
                ) from None
            images.append(GeneratedImage(data=data, mime_type=mime_type, seed=seed))
        return images

    return await anyio.to_thread.run_sync(decode)


@dataclass(frozen=True)
class ProviderResult:
    images: Sequence[GeneratedImage]
    #: In US dollars, when the provider reports it.
    cost: float | None = None
    #: What the provider changed about the request, in words an agent can pass on (e.g. a size mapping).
    adjustments: Sequence[str] = ()
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Requirement:
    """One condition a provider (or a model) needs: whether it holds, the reason given when it does not, and
    the steps, in order, that a person follows to meet it."""

    met: bool
    reason: str
    steps: tuple[str, ...]


def sdk_requirement(module: str, sdk: str, extra: str) -> Requirement:
    """The provider's SDK is installed (checked without importing it)."""
    return Requirement(
        met=not missing_modules(module),
        reason=f"the {sdk} SDK is not installed",
        steps=(f"Install the {extra.capitalize()} extra: pip install 'imagegen-mcp[{extra}]'",),
    )


@dataclass(frozen=True)
class Availability:
    """Whether a provider (or one of its models) can run now, why not, and the steps that fix it.

    ``models`` holds the models whose availability differs from the provider's (e.g. a local model whose
    weights are missing while others are on disk); :meth:`model` answers for any key.
    """

    met: bool
    reason: str | None = None
    steps: tuple[str, ...] = ()
    models: Mapping[str, Availability] = field(default_factory=dict, hash=False)

    @classmethod
    def of(cls, requirements: Iterable[Requirement]) -> Availability:
        """Met when every requirement is; the reason is the first unmet one's, the steps those of all unmet."""
        unmet = [need for need in requirements if not need.met]
        if not unmet:
            return cls(met=True)
        steps = tuple(dict.fromkeys(step for need in unmet for step in need.steps))
        return cls(met=False, reason=unmet[0].reason, steps=steps)

    def model(self, key: str) -> Availability:
        """The availability of model ``key``: the provider's, unless the model's own differs."""
        return self.models.get(key, self)


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


class ImageProvider(ABC, Generic[M]):
    """An image backend whose models are configured by ``M``.

    Subclasses set ``info``, implement :meth:`builtin_models` and :meth:`generate`, and declare what they need
    in :meth:`requirements` (and :meth:`model_requirements`, for needs that differ per model).
    """

    info: ProviderInfo

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        #: Every model this provider serves, by key.
        self.models: dict[str, M] = registry(self._with_vendor_ids(self.builtin_models()))

    @abstractmethod
    def builtin_models(self) -> Sequence[M]:
        """The models that come with the provider."""

    def retired_models(self) -> Mapping[str, RetiredModel]:
        """Names a request may still use although the vendor retired them (old keys, old vendor ids)."""
        return {}

    def _with_vendor_ids(self, models: Sequence[M]) -> list[M]:
        """``models`` with the vendor ids ``IMAGEGEN_MODEL_IDS`` sets for them."""
        ids = self.settings.model_ids_of(self.info.name)
        keys = {model.key for model in models}
        unknown = sorted(set(ids) - keys)
        if unknown:
            raise ConfigError(
                f"IMAGEGEN_MODEL_IDS: {self.info.name} has no model {', '.join(unknown)}; its models are "
                f"{', '.join(sorted(keys))}"
            )
        changed = []
        for model in models:
            if model.key not in ids:
                changed.append(model)
                continue
            if model.vendor_id_field is None:
                raise ConfigError(f"IMAGEGEN_MODEL_IDS: {self.info.name}:{model.key} has no vendor model id to set")
            changed.append(model.model_copy(update={model.vendor_id_field: ids[model.key]}))
        return changed

    def retired_error(self, model: M, detail: str) -> ModelRetiredError:
        """The error for a vendor's answer that ``model``'s vendor id does not exist: it names the id, says it
        was likely retired, and how to point the entry at another id without a new release."""
        model_id = f"{self.info.name}:{model.key}"
        return ModelRetiredError(
            f"{self.info.display_name} does not serve {model.vendor_id!r}, the model id of {model_id} ({detail}); "
            "the vendor has likely retired it.",
            provider=self.info.name,
            model=model_id,
            remediation=[
                f'Point {model_id} at the vendor\'s current id: IMAGEGEN_MODEL_IDS="{model_id}=<current id>" in '
                "the server's environment (or the config file), then restart the server",
                "Or choose another model (see list_models)",
            ],
            details={"vendor_id": model.vendor_id},
        )

    def requirements(self) -> Sequence[Requirement]:
        """What this provider needs (an SDK, a key, a device, ...). Cheap: no network, no heavy import."""
        return ()

    def model_requirements(self, model: M) -> Sequence[Requirement]:
        """What one model needs beyond the provider's requirements (e.g. its weights on disk). Cheap too."""
        return ()

    def check(self) -> Availability:
        """The provider's availability now, with the models whose availability differs.

        A provider none of whose models can run is unavailable, with its default model's reason and steps.
        """
        availability = Availability.of(self.requirements())
        if not availability.met:
            return availability
        differing = {
            key: model_availability
            for key, model in self.models.items()
            if not (model_availability := Availability.of(self.model_requirements(model))).met
        }
        if differing and len(differing) == len(self.models):
            default_key = self.info.default_model
            default = differing[default_key]
            return Availability(
                met=False,
                reason=f"none of its models can run here (default model {default_key}: {default.reason})",
                steps=default.steps,
                models=differing,
            )
        return Availability(met=True, models=differing)

    def timeout_s(self, default: float) -> float:
        """How long one generation may take before it is a ``provider_timeout`` (the server's by default)."""
        return default

    @abstractmethod
    async def generate(self, request: GenerationRequest, model: M, progress: Progress) -> ProviderResult:
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


def registry(configs: Iterable[M]) -> dict[str, M]:
    """A provider's models keyed by model key; a repeated key is a programming error."""
    models: dict[str, M] = {}
    for config in configs:
        if config.key in models:
            raise ValueError(f"model key {config.key!r} is defined twice")
        models[config.key] = config
    return models
