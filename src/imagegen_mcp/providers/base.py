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
import contextlib
import functools
import importlib.util
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, Self, TypeVar, cast

import anyio.to_thread
import pybase64
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from imagegen_mcp.config import Settings
from imagegen_mcp.errors import ConfigError, ModelRetiredError, ProviderError
from imagegen_mcp.images import ArrivingBytes, UnusableImageError, decode_arriving
from imagegen_mcp.inputs import InputImage

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage
from imagegen_mcp.storage import MAX_OUTPUT_PIXELS, URI_PREFIX

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
    #: Whether its images cost money (so IMAGEGEN_DAILY_BUDGET_USD applies to it).
    paid: bool = True
    #: Whether it has a catalog to search (:meth:`ImageProvider.search_models`) beyond its configured models.
    searchable: bool = False


class ImageInputs(BaseModel):
    """What a model can do with input images (shown by ``list_models``; the resolver plans by it)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Starts from an input image and moves away from it by a strength.
    image_to_image: bool = False
    #: Repaints only where a mask is white.
    inpaint: bool = False
    #: Edits an input image by an instruction ("make the sky darker").
    instruction_edit: bool = False
    #: Style or subject references it takes besides the image to edit.
    max_reference_images: int = Field(0, ge=0, le=16)

    def refusal(self, needs: EditNeeds) -> str | None:
        """Why this model cannot serve an edit that needs ``needs``, or ``None`` when it can."""
        if not (self.image_to_image or self.instruction_edit):
            return "takes no input image"
        if needs.mask and not self.inpaint:
            return "cannot inpaint with a mask"
        if needs.references > self.max_reference_images:
            if not self.max_reference_images:
                return "takes no reference images"
            return f"takes at most {self.max_reference_images} reference images"
        return None


@dataclass(frozen=True)
class EditNeeds:
    """What an edit request uses, for planning: a mask, and how many reference images."""

    mask: bool
    references: int

    def describe(self) -> str:
        parts = ["edit an image"]
        if self.mask:
            parts.append("inpaint with a mask")
        if self.references:
            parts.append(f"take {self.references} reference image(s)")
        return ", ".join(parts)

    def simpler(self) -> list[str]:
        """The steps that ask for less, when no model here can do all of it."""
        steps = ["Drop the mask: without one, the edit applies to the whole image"] if self.mask else []
        if self.references:
            steps.append("Pass fewer reference images, or none (list_models shows what each model takes)")
        return steps or ["Call list_models: its inputs show which models edit images"]


class LoraSpec(BaseModel):
    """A LoRA to apply, by the vendor's id or a local file, at a weight."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str | None = Field(
        None, description="Runware: its AIR id; local models: 'org/repo/file.safetensors' on Hugging Face."
    )
    path: Path | None = Field(None, description="Local models: a .safetensors file on this machine.")
    weight: float = Field(1.0, ge=-4, le=4)

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.model is None) == (self.path is None):
            raise ValueError("give a LoRA's model id or its path, not both and not neither")
        return self

    @property
    def label(self) -> str:
        return str(self.model or self.path)


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
    inputs: ImageInputs
    supports_loras: bool


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
    #: What it does with input images (none by default).
    inputs: ImageInputs = ImageInputs()
    #: How far an image-to-image edit moves from the input when the request does not say (0-1).
    default_strength: float = Field(0.75, ge=0, le=1)
    supports_loras: bool = False
    #: LoRAs applied unless a request names its own.
    loras: tuple[LoraSpec, ...] = ()

    #: The field holding the id the vendor knows the model by (``IMAGEGEN_MODEL_IDS`` can change it).
    vendor_id_field: ClassVar[str | None] = None

    @property
    def vendor_id(self) -> str | None:
        return str(getattr(self, self.vendor_id_field)) if self.vendor_id_field else None

    @model_validator(mode="after")
    def _defaults_fit(self) -> Self:
        if max(self.default_width, self.default_height) > self.max_resolution:
            raise ValueError(f"default size {self.default_width}x{self.default_height} exceeds max_resolution")
        if self.loras and not self.supports_loras:
            raise ValueError("loras: this model takes no LoRAs (supports_loras is false)")
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
            inputs=self.inputs,
            supports_loras=self.supports_loras,
        )


M = TypeVar("M", bound=ModelConfig)

#: What an edit does, as its provenance records it.
EditOperation = Literal["image_to_image", "inpaint", "instruction_edit"]


@dataclass(frozen=True)
class EditInputs:
    """The checked input images of an edit, resolved for the model that runs it."""

    operation: EditOperation
    image: InputImage
    #: Greyscale PNG of the image's size: white repaints, black keeps.
    mask: InputImage | None = None
    references: tuple[InputImage, ...] = ()
    #: For image-to-image and inpainting: how far from the input to go (0 keeps it, 1 ignores it).
    strength: float | None = None

    def records(self) -> list[dict[str, Any]]:
        """Each input image as provenance names it: its argument, its id and URI when stored here, its hash."""
        images = [self.image, *([self.mask] if self.mask is not None else []), *self.references]
        return [
            {
                "argument": image.argument,
                "image_id": image.image_id,
                "uri": URI_PREFIX + image.image_id if image.image_id else None,
                "sha256": image.sha256,
                "width": image.width,
                "height": image.height,
            }
            for image in images
        ]


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
    #: The input images when the request is an edit.
    edit: EditInputs | None = None
    loras: tuple[LoraSpec, ...] = ()

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
    #: The same image as pixels, when the provider made it in this process (a local pipeline) or decoded exactly
    #: ``data`` with the server's own checks while it arrived (:func:`decoded_while_arriving`): the server then
    #: need not decode ``data`` again to check it and make the preview.
    decoded: PILImage | None = None


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


#: How long a download goes on before its image is decoded while the rest arrives. Bytes that come at once
#: (loopback, a fast link, a small image) are decoded in one go afterwards, which costs less: a decode fed part
#: by part takes turns at the interpreter with the event loop that receives the parts.
DECODE_WHILE_ARRIVING_AFTER_S = 0.005


async def decoded_while_arriving(
    receive: Callable[[ArrivingBytes], Awaitable[None]], decoders: anyio.CapacityLimiter
) -> tuple[bytes, PILImage | None]:
    """The bytes that ``receive`` feeds (a download, part by part), and their image when the download takes long
    enough to hide its decode (:data:`DECODE_WHILE_ARRIVING_AFTER_S`): decoded in a worker thread while the bytes
    arrive, with the checks the server makes of every image (:data:`MAX_OUTPUT_PIXELS`, a complete decode), so
    that on a real network the image is decoded about when its last byte comes. The image is None otherwise, or
    when the bytes are not a usable one: the server's check then decodes them and says what is wrong. What
    ``receive`` raises is raised as it is, once the decode has stopped.

    ``decoders`` bounds the decodes at once (about one per core); a download waiting for a decoder keeps
    receiving, and its decode then reads what has come at full speed, or, once the download is over, the
    server's check decodes it."""
    arriving = ArrivingBytes()
    decoded: list[PILImage] = []
    failure: list[BaseException] = []
    decoding = False

    async def decode() -> None:
        nonlocal decoding
        await anyio.sleep(DECODE_WHILE_ARRIVING_AFTER_S)
        async with decoders:  # a download over before a decoder is free is decoded afterwards, not waited on
            decoding = True
            with contextlib.suppress(UnusableImageError, OSError):
                decoded.append((await anyio.to_thread.run_sync(decode_arriving, arriving, MAX_OUTPUT_PIXELS)).image)

    async with anyio.create_task_group() as group:
        group.start_soon(decode)
        try:
            await receive(arriving)
        except BaseException as exc:  # cancellation too: the decode must not wait for bytes that will not come
            arriving.abort()
            failure.append(exc)
        else:
            arriving.end()
        if not decoding:
            group.cancel_scope.cancel()
    if failure:
        raise failure[0]
    return arriving.getvalue(), (decoded[0] if decoded else None)


@dataclass(frozen=True)
class ProviderResult:
    images: Sequence[GeneratedImage]
    #: In US dollars, when the provider reports it.
    cost: float | None = None
    #: What the provider changed about the request, in words an agent can pass on (e.g. a size mapping).
    adjustments: Sequence[str] = ()
    details: Mapping[str, Any] = field(default_factory=dict)
    #: The size the provider asked its backend for when it is not the request's (a tier's, say), so that only
    #: an image of yet another size is reported as a surprise.
    size: tuple[int, int] | None = None


@dataclass(frozen=True)
class VendorModel(Generic[M]):
    """A model built for a vendor id on request, and where its defaults came from (said in the result)."""

    model: M
    note: str


class ModelQuery(BaseModel):
    """What :meth:`ImageProvider.search_models` looks for."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    query: str = Field("", max_length=200, description="Words of the model's name, version or tags.")
    category: Literal["checkpoint", "lora", "lycoris", "vae", "embeddings"] | None = Field(
        None, description="checkpoint: a model to generate with; lora: one to pass in loras."
    )
    architecture: str | None = Field(None, max_length=40, description="e.g. flux1d, sdxl, sd1x, pony.")
    limit: int = Field(10, ge=1, le=50)


class FoundModel(BaseModel):
    """One model of a vendor's catalog, as a search found it."""

    #: What ``generate_image(model=...)`` takes for a checkpoint; for a LoRA, its ``loras`` entry's ``model``.
    id: str
    vendor_id: str
    name: str
    version: str | None = None
    category: str
    architecture: str | None = None
    tags: list[str] = Field(default_factory=list)
    default_width: int | None = None
    default_height: int | None = None
    default_steps: int | None = None
    default_guidance: float | None = None
    #: Words a LoRA needs in the prompt to act.
    trigger_words: str | None = None


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
    #: The provider's model config class, which validates the config file's entries for it (by default, the
    #: class of its first built-in model).
    model_type: ClassVar[type[ModelConfig] | None] = None

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        #: Every model this provider serves, by key: the built-ins, changed or joined by the config file's.
        self.models: dict[str, M] = {}
        #: ``info`` as the provider declares it, before the config file's default model.
        self.declared_info = self.info
        self.load_models(settings)

    def load_models(self, settings: Settings) -> None:
        """Build :attr:`models` and the default model from ``settings``."""
        self.models, self.info = self.models_for(settings)

    def models_for(self, settings: Settings) -> tuple[dict[str, M], ProviderInfo]:
        """The models and the provider info ``settings`` give (built-ins, the config file's entries, the
        default model of ``[providers.<name>]``), changing nothing: a reload applies them only when every
        provider accepts its own."""
        info = self.declared_info
        models = registry(self._with_vendor_ids(self.user_models(self.builtin_models(), settings), settings))
        default = settings.provider_table(info.name).get("default_model")
        if default is None:
            return models, info
        if default not in models:
            file = settings.config_file
            raise ConfigError(
                f"{file.path if file else 'config'}: [providers.{info.name}]: default_model: {default!r} is not a "
                f"model of {info.name}; its models are {', '.join(sorted(models))}"
            )
        return models, replace(info, default_model=str(default))

    @abstractmethod
    def builtin_models(self) -> Sequence[M]:
        """The models that come with the provider."""

    def user_models(self, builtins: Sequence[M], settings: Settings) -> list[M]:
        """``builtins`` with the config file's entries for this provider: an entry with a built-in's key changes
        that model's fields, any other is a new model. Each is validated by :attr:`model_type`."""
        entries = settings.model_entries(self.declared_info.name)
        if not entries:
            return list(builtins)
        model_type = self.model_type or (type(builtins[0]) if builtins else None)
        if model_type is None:
            raise ConfigError(f"{entries[0].where}: {self.declared_info.name} takes no models from the config file")
        models = {model.key: model for model in builtins}
        for entry in entries:
            base = models.get(entry.key)
            known = base.model_dump(exclude_unset=True) if base is not None else self.new_model_defaults(entry.fields)
            fields = {**known, **entry.fields}
            try:
                model = cast(M, model_type.model_validate(fields))
            except ValidationError as exc:
                raise ConfigError(_entry_problem(entry.where, exc, model_type)) from None
            problem = self.check_user_model(model)
            if problem is not None:
                raise ConfigError(f"{entry.where}: {problem}")
            models[model.key] = model
        return list(models.values())

    def new_model_defaults(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """What a config entry for a new model gets unless it says otherwise (built-ins spell everything out):
        its key as its name, and what providers add for the fields their backend needs, from ``fields``."""
        return {"display_name": str(fields.get("key", ""))}

    def lora_problem(self, lora: LoraSpec) -> str | None:
        """Why this provider cannot apply ``lora`` (a path where it takes vendor ids, a file that is not
        there...), or ``None``. Cheap: no network."""
        return None

    def check_user_model(self, model: M) -> str | None:
        """What is wrong with a model from the config file beyond its fields' own rules (a path that does not
        exist, say), as ``field: problem``; ``None`` when nothing is."""
        return None

    def retired_models(self) -> Mapping[str, RetiredModel]:
        """Names a request may still use although the vendor retired them (old keys, old vendor ids)."""
        return {}

    def _with_vendor_ids(self, models: Sequence[M], settings: Settings) -> list[M]:
        """``models`` with the vendor ids ``IMAGEGEN_MODEL_IDS`` sets for them."""
        ids = settings.model_ids_of(self.declared_info.name)
        keys = {model.key for model in models}
        unknown = sorted(set(ids) - keys)
        if unknown:
            raise ConfigError(
                f"IMAGEGEN_MODEL_IDS: {self.declared_info.name} has no model {', '.join(unknown)}; its models are "
                f"{', '.join(sorted(keys))}"
            )
        changed = []
        for model in models:
            if model.key not in ids:
                changed.append(model)
                continue
            if model.vendor_id_field is None:
                raise ConfigError(
                    f"IMAGEGEN_MODEL_IDS: {self.declared_info.name}:{model.key} has no vendor model id to set"
                )
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

    async def vendor_model(self, vendor_id: str) -> VendorModel[M] | None:
        """A model for a vendor id that no entry configures (``runware:<AIR id>``), or ``None`` when this
        provider serves only configured models or ``vendor_id`` is not one of its ids."""
        return None

    async def search_models(self, query: ModelQuery) -> list[FoundModel]:
        """The vendor's catalog searched for ``query`` (providers whose ``info.searchable`` is true)."""
        return []

    async def aclose(self) -> None:
        """Release connections or pipelines opened by :meth:`generate`."""
        return None


def _entry_problem(where: str, exc: ValidationError, model_type: type[ModelConfig]) -> str:
    """One line per problem of a config entry: the field, what is wrong, what is allowed."""
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        field_name = ".".join(str(part) for part in error["loc"]) or "entry"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message += f" (the fields of a {model_type.__name__}: {', '.join(model_type.model_fields)})"
        problems.append(f"{field_name}: {message}")
    return f"{where}: " + "; ".join(problems)


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
