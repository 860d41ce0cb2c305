"""Google Gemini image models ("Nano Banana") through ``google-genai``.

Gemini sizes images by aspect ratio and a resolution tier (``imageConfig.imageSize``), not by pixels: the
request's aspect ratio, or else its width/height, is mapped to the nearest ratio the model accepts, and the
requested size to the smallest tier whose image at that ratio covers it. The mapping, and what it costs where
Google publishes a price per image, are reported in the result. The image models make one image per call, so
``count`` images are that many concurrent calls.

Retries happen in one place only: the SDK's own retry loop is set to a single attempt, and the error this
module raises tells the service (fallback) and the agent (``retryable``, ``retry_after_s``) what to do.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any, ClassVar

import anyio
from pydantic import Field, SecretStr, model_validator

from imagegen_mcp.config import EnvSettings, Settings
from imagegen_mcp.errors import (
    AuthenticationError,
    ContentBlockedError,
    ImageGenError,
    ProviderError,
    ProviderUnavailableError,
    RateLimitedError,
)
from imagegen_mcp.providers.base import (
    GeneratedImage,
    GenerationRequest,
    ImageInputs,
    ImageProvider,
    ModelConfig,
    Progress,
    ProviderInfo,
    ProviderResult,
    Requirement,
    RetiredModel,
    sdk_requirement,
)

if TYPE_CHECKING:
    from google.genai import Client
    from google.genai.errors import APIError
    from google.genai.types import GenerateContentResponse

#: The aspect ratios of the Gemini image models, in the order that breaks ties when a size is mapped to one.
GEMINI_ASPECT_RATIOS = (
    "1:1",
    "2:3",
    "3:2",
    "3:4",
    "4:3",
    "4:5",
    "5:4",
    "9:16",
    "16:9",
    "21:9",
    "1:4",
    "4:1",
    "1:8",
    "8:1",
)
#: The ten ratios every Gemini image model takes; Gemini 3 Pro Image has only these (no 1:4, 4:1, 1:8, 8:1).
STANDARD_ASPECT_RATIOS = GEMINI_ASPECT_RATIOS[:10]
#: Pixel sizes of the 1K tier per aspect ratio, as Google's image generation guide lists them.
SIZES_1K = {
    "1:1": (1024, 1024),
    "2:3": (848, 1264),
    "3:2": (1264, 848),
    "3:4": (896, 1200),
    "4:3": (1200, 896),
    "4:5": (928, 1152),
    "5:4": (1152, 928),
    "9:16": (768, 1376),
    "16:9": (1376, 768),
    "21:9": (1584, 672),
    "1:4": (512, 2048),
    "4:1": (2048, 512),
    "1:8": (384, 3072),
    "8:1": (3072, 384),
}
#: Resolution tiers, spelled as ``imageConfig.imageSize`` takes them (``512`` has no K; the K is uppercase), and
#: their scale of the 1K sizes.
GEMINI_IMAGE_SIZES = {"512": 0.5, "1K": 1.0, "2K": 2.0, "4K": 4.0}
#: The tier the API uses when a request names none.
DEFAULT_IMAGE_SIZE = "1K"

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com/"
#: Image output (``imageConfig``) is documented for v1beta; pinning it also ignores GOOGLE_GENAI_API_VERSION.
API_VERSION = "v1beta"
#: Calls in flight to the Gemini API at once, across all tool calls served by this provider.
MAX_IN_FLIGHT = 4
#: Finish reasons that mean the output was withheld by a safety or policy filter (not a model failure).
BLOCKING_FINISH_REASONS = frozenset(
    {
        "SAFETY",
        "PROHIBITED_CONTENT",
        "BLOCKLIST",
        "SPII",
        "RECITATION",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
    }
)
#: Connection-level exception bases of the HTTP stacks google-genai may use, depending on its version and
#: what is installed. Checked through ``sys.modules``: a stack that was never imported raised nothing.
_TRANSPORT_ERRORS = (("httpx2", "TransportError"), ("httpx", "TransportError"), ("aiohttp", "ClientError"))
_RETRY_DELAY = re.compile(r"^(\d+(?:\.\d+)?)s$")
_RPC = "type.googleapis.com/google.rpc."
_BILLING_URL = "https://ai.google.dev/gemini-api/docs/billing"
_RATE_LIMITS_URL = "https://ai.google.dev/gemini-api/docs/rate-limits"
_KEYS_URL = "https://aistudio.google.com/apikey"


class GeminiSettings(EnvSettings):
    gemini_api_key: SecretStr | None = Field(None, alias="GEMINI_API_KEY")
    google_api_key: SecretStr | None = Field(None, alias="GOOGLE_API_KEY")
    base_url: str | None = Field(None, alias="GEMINI_BASE_URL", pattern=r"^https?://")

    @property
    def api_key(self) -> SecretStr | None:
        return self.gemini_api_key or self.google_api_key

    @property
    def api_key_variable(self) -> str:
        """The variable the key in use came from, to name in remediation steps."""
        return "GOOGLE_API_KEY" if self.gemini_api_key is None and self.google_api_key else "GEMINI_API_KEY"


class GeminiModelConfig(ModelConfig):
    vendor_id_field: ClassVar[str | None] = "api_model"

    api_model: str = Field(description="The model name the Gemini API knows, e.g. 'gemini-3.1-flash-image'.")
    default_steps: int | None = None
    default_guidance: float | None = None
    supports_negative_prompt: bool = False
    size_multiple: int = 1
    aspect_ratios: tuple[str, ...] = GEMINI_ASPECT_RATIOS
    #: The resolution tiers the model accepts; empty for models with a single, implicit one.
    image_sizes: tuple[str, ...] = ()
    #: US dollars per generated image, by tier, where Google publishes it; a tier left out has no known price.
    price_per_image: dict[str, float] = Field(default_factory=dict)
    #: Edits by instruction; the API takes up to 14 input images a request: the one to edit and 13 references.
    inputs: ImageInputs = ImageInputs(instruction_edit=True, max_reference_images=13)

    @model_validator(mode="after")
    def _options_known(self) -> GeminiModelConfig:
        unknown = (set(self.aspect_ratios) - set(GEMINI_ASPECT_RATIOS)) | (
            set(self.image_sizes) - set(GEMINI_IMAGE_SIZES)
        )
        if unknown:
            raise ValueError(f"unsupported aspect ratios or image sizes: {sorted(unknown)}")
        if not self.aspect_ratios:
            raise ValueError("a Gemini model needs at least one aspect ratio")
        stray_prices = set(self.price_per_image) - set(self.image_sizes)
        if stray_prices:
            raise ValueError(f"prices for tiers the model does not take: {sorted(stray_prices)}")
        return self


GEMINI_MODELS = (
    GeminiModelConfig(
        key="gemini_nano_banana_2_1",
        display_name="Nano Banana 2.1",
        description="Google's current fast image model, the successor of Nano Banana 2: legible text, close "
        "prompt following, consistent characters. Tiers 1K, 2K and 4K, chosen from the requested size; aspect "
        "ratios from 1:8 to 8:1.",
        api_model="gemini-nano-banana-2.1",
        max_resolution=4096,
        image_sizes=("1K", "2K", "4K"),
    ),
    GeminiModelConfig(
        key="gemini_3_1_flash_image",
        display_name="Nano Banana 2 (Gemini 3.1 Flash Image)",
        description="Fast, inexpensive image generation; the only Gemini model with the 512 tier (small drafts "
        "at $0.045). Tiers 512, 1K, 2K and 4K, chosen from the requested size; aspect ratios from 1:8 to 8:1. "
        "Google has deprecated it in favour of Nano Banana 2.1.",
        api_model="gemini-3.1-flash-image",
        max_resolution=4096,
        image_sizes=("512", "1K", "2K", "4K"),
        price_per_image={"512": 0.045, "1K": 0.067, "2K": 0.101, "4K": 0.151},
    ),
    GeminiModelConfig(
        key="gemini_3_pro_image",
        display_name="Nano Banana Pro (Gemini 3 Pro Image)",
        description="Gemini's highest-quality image model: legible text, complex layouts; slower, pricier. "
        "Tiers 1K, 2K and 4K, chosen from the requested size; aspect ratios from 9:16 to 21:9.",
        api_model="gemini-3-pro-image",
        max_resolution=4096,
        aspect_ratios=STANDARD_ASPECT_RATIOS,
        image_sizes=("1K", "2K", "4K"),
        price_per_image={"1K": 0.134, "2K": 0.134, "4K": 0.24},
    ),
)

_FLASH_SHUT_DOWN = RetiredModel("gemini_nano_banana_2_1", "Google shut gemini-2.5-flash-image down on 2 October 2026")
_FLASH_PREVIEW_SHUT_DOWN = RetiredModel(
    "gemini_3_1_flash_image", "Google shut gemini-3.1-flash-image-preview down on 25 June 2026"
)
_PRO_PREVIEW_SHUT_DOWN = RetiredModel(
    "gemini_3_pro_image", "Google shut gemini-3-pro-image-preview down on 25 June 2026"
)
#: Names of models Google no longer serves (the catalog keys and vendor ids they had), with their successors.
RETIRED_MODELS: Mapping[str, RetiredModel] = {
    "gemini_flash_image": _FLASH_SHUT_DOWN,
    "gemini-2.5-flash-image": _FLASH_SHUT_DOWN,
    "gemini_pro_image": _PRO_PREVIEW_SHUT_DOWN,
    "gemini-3-pro-image-preview": _PRO_PREVIEW_SHUT_DOWN,
    "gemini-3.1-flash-image-preview": _FLASH_PREVIEW_SHUT_DOWN,
}


# -- sizes ------------------------------------------------------------------------------------------------


def ratio_value(ratio: str) -> float:
    width, height = (int(part) for part in ratio.split(":"))
    return width / height


def nearest_aspect_ratio(target: float, supported: Sequence[str]) -> str:
    """The supported ratio closest to ``target`` (width / height).

    Distances are compared on a log scale, so 2:1 and 1:2 are equally far from 1:1; ties go to the ratio
    listed first, so the choice is deterministic.
    """
    return min(supported, key=lambda ratio: abs(math.log(ratio_value(ratio)) - math.log(target)))


def output_size(aspect_ratio: str, image_size: str | None) -> tuple[int, int]:
    """The pixel size of a Gemini image at ``aspect_ratio`` and tier ``image_size`` (the API's default if none)."""
    width, height = SIZES_1K[aspect_ratio]
    scale = GEMINI_IMAGE_SIZES[image_size or DEFAULT_IMAGE_SIZE]
    return round(width * scale), round(height * scale)


def image_size_for(width: int, height: int, aspect_ratio: str, sizes: Sequence[str]) -> str | None:
    """The smallest tier of ``sizes`` whose image at ``aspect_ratio`` is at least ``width`` x ``height`` (the
    largest tier if none is); ``None`` for a model without tiers."""
    if not sizes:
        return None
    ordered = sorted(sizes, key=GEMINI_IMAGE_SIZES.__getitem__)

    def covers(tier: str) -> bool:
        tier_width, tier_height = output_size(aspect_ratio, tier)
        return tier_width >= width and tier_height >= height

    return next((tier for tier in ordered if covers(tier)), ordered[-1])


@dataclass(frozen=True)
class Shape:
    """What Gemini is asked for in place of pixel sizes."""

    aspect_ratio: str
    image_size: str | None

    @classmethod
    def for_request(cls, request: GenerationRequest, model: GeminiModelConfig) -> Shape:
        target = ratio_value(request.aspect_ratio) if request.aspect_ratio else request.width / request.height
        aspect_ratio = nearest_aspect_ratio(target, model.aspect_ratios)
        return cls(
            aspect_ratio=aspect_ratio,
            image_size=image_size_for(request.width, request.height, aspect_ratio, model.image_sizes),
        )

    def describe(self) -> str:
        return f"{self.aspect_ratio} at {self.image_size}" if self.image_size else self.aspect_ratio

    def cost(self, model: GeminiModelConfig, count: int) -> float | None:
        """What ``count`` images cost in US dollars, when Google publishes the model's price at this tier."""
        price = model.price_per_image.get(self.image_size) if self.image_size else None
        return None if price is None else round(price * count, 6)

    def adjustment(self, request: GenerationRequest, model_id: str, actual: tuple[int, int]) -> str | None:
        """A sentence for the result when the image is not what the request literally asked for."""
        if request.aspect_ratio is not None:
            if request.aspect_ratio == self.aspect_ratio:
                return None
            return (
                f"aspect_ratio {request.aspect_ratio} mapped to {self.aspect_ratio}, the nearest {model_id} "
                f"supports; the image is {actual[0]}x{actual[1]}"
            )
        if actual == (request.width, request.height):
            return None
        return (
            f"size {request.width}x{request.height} mapped to aspect ratio {self.describe()}: {model_id} takes an "
            f"aspect ratio and a resolution tier, not pixel sizes; the image is {actual[0]}x{actual[1]}"
        )


# -- the provider -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Image:
    data: bytes
    mime_type: str


def _contents(request: GenerationRequest) -> Any:
    """The prompt, and for an edit the image to edit and then the references, as the API's parts in that order
    (an instruction such as "the second image" counts from the image to edit)."""
    if request.edit is None:
        return request.prompt
    from google.genai import types

    images = [request.edit.image, *request.edit.references]
    return [
        types.Part.from_text(text=request.prompt),
        *(types.Part.from_bytes(data=image.data, mime_type=image.mime_type) for image in images),
    ]


class GeminiProvider(ImageProvider[GeminiModelConfig]):
    info = ProviderInfo(
        name="gemini",
        display_name="Google Gemini",
        description="Gemini image models (Nano Banana) through the Gemini API; sizes by aspect ratio and tier.",
        default_model="gemini_nano_banana_2_1",
        priority=3,
    )

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.config = settings.provider_settings(GeminiSettings)
        self._client: Client | None = None
        self._limiter = anyio.CapacityLimiter(MAX_IN_FLIGHT)

    def builtin_models(self) -> Sequence[GeminiModelConfig]:
        return GEMINI_MODELS

    def retired_models(self) -> Mapping[str, RetiredModel]:
        return RETIRED_MODELS

    def new_model_defaults(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        # The API's largest tier (4K) bounds any model's longest side.
        return {**super().new_model_defaults(fields), "max_resolution": 4096}

    def requirements(self) -> list[Requirement]:
        return [
            sdk_requirement("google.genai", "google-genai", "gemini"),
            Requirement(
                met=self.config.api_key is not None,
                reason="neither GEMINI_API_KEY nor GOOGLE_API_KEY is set",
                steps=(
                    f"Create a key at {_KEYS_URL} and set GEMINI_API_KEY in the server's environment; image "
                    "models need a project with billing enabled (their free-tier quota is 0)",
                ),
            ),
        ]

    @property
    def base_url(self) -> str:
        return self.config.base_url or DEFAULT_BASE_URL

    def _connect(self) -> Client:
        """The SDK client, created on first use and reused (imports google-genai only now)."""
        if self._client is None:
            from google import genai
            from google.genai import types

            if self.config.api_key is None:
                raise ProviderUnavailableError("Gemini has no API key.", remediation=self.check().steps)
            self._client = genai.Client(
                api_key=self.config.api_key.get_secret_value(),
                # Explicit, so GOOGLE_GENAI_USE_VERTEXAI and similar variables cannot redirect the client.
                vertexai=False,
                http_options=types.HttpOptions(
                    base_url=self.base_url,
                    api_version=API_VERSION,
                    # One attempt: the SDK would otherwise retry 429 and 5xx itself, up to 5 times.
                    retry_options=types.HttpRetryOptions(attempts=1),
                ),
            )
        return self._client

    async def generate(
        self, request: GenerationRequest, model: GeminiModelConfig, progress: Progress
    ) -> ProviderResult:
        client = self._connect()
        model_id = f"{self.info.name}:{model.key}"
        shape = Shape.for_request(request, model)
        seeds = [request.seed_of(index) for index in range(request.count)]
        images: list[_Image | None] = [None] * request.count
        failures: list[ImageGenError] = []
        contents = _contents(request)
        await progress.update(f"asking {model.display_name} for {request.count} image(s) at {shape.describe()}", 0.05)

        async def one(index: int) -> None:
            try:
                async with self._limiter:
                    images[index] = await self._generate_one(client, contents, model, shape, seeds[index])
            except ImageGenError as error:
                # The first failure decides the outcome; the other calls are not worth waiting for.
                failures.append(error)
                group.cancel_scope.cancel()
                return
            received = sum(image is not None for image in images)
            await progress.update(
                f"received image {received} of {request.count}", 0.05 + 0.9 * received / request.count
            )

        async with anyio.create_task_group() as group:
            for index in range(request.count):
                group.start_soon(one, index)
        if failures:
            raise failures[0]
        done = [image for image in images if image is not None]
        details: dict[str, Any] = {"aspect_ratio": shape.aspect_ratio, "api_model": model.api_model}
        if shape.image_size:
            details["image_size"] = shape.image_size
        size = output_size(shape.aspect_ratio, shape.image_size)
        note = shape.adjustment(request, model_id, size)
        return ProviderResult(
            images=[
                GeneratedImage(data=image.data, mime_type=image.mime_type, seed=seed)
                for image, seed in zip(done, seeds, strict=True)
            ],
            cost=shape.cost(model, len(done)),
            adjustments=[note] if note else [],
            details=details,
            size=size,
        )

    async def _generate_one(
        self, client: Client, contents: Any, model: GeminiModelConfig, shape: Shape, seed: int
    ) -> _Image:
        from google.genai import errors, types

        config = types.GenerateContentConfig(
            # TEXT too, so that a refusal comes with the model's explanation.
            response_modalities=["TEXT", "IMAGE"],
            image_config=types.ImageConfig(aspect_ratio=shape.aspect_ratio, image_size=shape.image_size),
            seed=seed,
            # No tools are declared; this also keeps the SDK from logging "AFC is enabled" on every call.
            automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
        )
        try:
            response = await client.aio.models.generate_content(model=model.api_model, contents=contents, config=config)
        except errors.APIError as exc:
            raise self._api_error(exc, model) from exc
        except ValueError as exc:  # the SDK could not read the answer (not JSON, a field of the wrong shape...)
            raise ProviderError(
                f"Gemini's answer could not be read ({type(exc).__name__}: {_clip(str(exc))}).",
                retryable=True,
                remediation=["Try again; if it persists, check that GEMINI_BASE_URL (if set) is the Gemini API"],
            ) from exc
        except Exception as exc:
            if not _is_transport_error(exc):
                raise
            raise ProviderError(
                f"Could not reach the Gemini API at {self.base_url} ({type(exc).__name__}: {exc}).",
                retryable=True,
                remediation=["Check the network connection (and GEMINI_BASE_URL if it is set), then try again"],
            ) from exc
        return _image_from(response)

    def _api_error(self, exc: APIError, model: GeminiModelConfig) -> ImageGenError:
        """Map an HTTP error of the Gemini API to the error an agent can act on."""
        details = _rpc_details(exc)
        reasons = {detail.get("reason") for detail in details if detail.get("@type") == _RPC + "ErrorInfo"}
        summary = _clip(f"{exc.code} {exc.status or ''}: {exc.message or ''}")
        variable = self.config.api_key_variable
        if exc.code in (401, 403) or "API_KEY_INVALID" in reasons:
            return AuthenticationError(
                f"The Gemini API rejected the key in {variable} ({summary}).",
                remediation=[
                    f"Check {variable}: the key may be mistyped, expired or revoked; create one at {_KEYS_URL}",
                    "Make sure the key's project has the Generative Language API enabled and that the key's "
                    "API restrictions allow it",
                ],
            )
        if exc.code == 429:
            delay = _retry_delay(details)
            wait = [f"Wait {delay:g} s before trying again"] if delay is not None else []
            return RateLimitedError(
                f"Gemini quota or rate limit exceeded for {model.api_model} ({summary}).",
                retry_after_s=delay,
                remediation=[
                    *wait,
                    "Gemini image models have no free tier (their free-tier quota is 0): enable billing for the "
                    f"key's project ({_BILLING_URL}) or use a key from a project that has it",
                    f"Check the project's limits and usage: {_RATE_LIMITS_URL}",
                ],
            )
        if exc.code >= 500:
            return ProviderError(
                f"The Gemini API failed ({summary}); this is usually temporary.",
                retryable=True,
                remediation=["Try again in a minute, or use another provider"],
            )
        if exc.code == 404 and exc.status == "NOT_FOUND":
            # The API's answer for a model name it does not know (any more): "models/<id> is not found for API
            # version v1beta, or is not supported for generateContent".
            return self.retired_error(model, summary)
        if exc.code == 404:
            return ProviderError(
                f"{self.base_url} has no Gemini API endpoint for {model.api_model} ({summary}).",
                remediation=["If GEMINI_BASE_URL is set, make sure it points to the Gemini API, then try again"],
            )
        return ProviderError(
            f"The Gemini API refused the request ({summary}).",
            remediation=["Read the API's message above; change the request or the server's Gemini settings"],
        )

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aio.aclose()
            client.close()


# -- responses --------------------------------------------------------------------------------------------


def _image_from(response: GenerateContentResponse) -> _Image:
    """The image of a response, or the error that explains why there is none."""
    feedback = response.prompt_feedback
    if feedback is not None and feedback.block_reason is not None:
        reason = _name(feedback.block_reason)
        explanation = f": {feedback.block_reason_message}" if feedback.block_reason_message else ""
        raise ContentBlockedError(
            f"Gemini refused the prompt (block reason {reason}){explanation}.",
            remediation=[
                "Rephrase the prompt without what the safety filter objects to; another provider is not "
                "tried for blocked content",
            ],
            details={"block_reason": reason},
        )
    candidate = response.candidates[0] if response.candidates else None
    parts = (candidate.content.parts if candidate and candidate.content else None) or []
    for part in parts:
        blob = part.inline_data
        if part.thought or blob is None or not blob.data or not (blob.mime_type or "").startswith("image/"):
            continue
        return _Image(data=blob.data, mime_type=blob.mime_type or "image/png")

    finish = _name(candidate.finish_reason) if candidate and candidate.finish_reason else "none"
    if finish in BLOCKING_FINISH_REASONS:
        raise ContentBlockedError(
            f"Gemini withheld the image: a safety or policy filter stopped it (finish reason {finish}).",
            remediation=[
                "Rephrase the prompt: leave out what may break the usage policy (real people, violence, "
                "explicit or copyrighted content); another provider is not tried for blocked content",
            ],
            details={"finish_reason": finish},
        )
    said = " ".join(part.text.strip() for part in parts if part.text and not part.thought).strip()
    raise ProviderError(
        f"Gemini answered without an image (finish reason {finish})."
        + (f' The model said: "{_clip(said)}"' if said else ""),
        remediation=[
            "Ask for the picture explicitly, e.g. begin the prompt with 'Generate an image of'",
            "Try again: image models sometimes answer with text only",
        ],
        details={"finish_reason": finish, "model_text": _clip(said)} if said else {"finish_reason": finish},
    )


def _rpc_details(exc: APIError) -> list[dict[str, Any]]:
    """The ``google.rpc`` detail objects of an error body (``{"error": {"details": [...]}}``)."""
    body = exc.details if isinstance(exc.details, dict) else {}
    error = body.get("error", body)
    details = error.get("details") if isinstance(error, dict) else None
    return [detail for detail in details or [] if isinstance(detail, dict)]


def _retry_delay(details: list[dict[str, Any]]) -> float | None:
    """Seconds from a ``RetryInfo`` detail (a protobuf Duration in JSON: ``"17s"``, ``"0.5s"``)."""
    for detail in details:
        if detail.get("@type") == _RPC + "RetryInfo":
            match = _RETRY_DELAY.match(str(detail.get("retryDelay", "")))
            if match:
                return float(match.group(1))
    return None


def _is_transport_error(exc: BaseException) -> bool:
    for module_name, class_name in _TRANSPORT_ERRORS:
        module = sys.modules.get(module_name)
        error_type = getattr(module, class_name, None)
        if isinstance(error_type, type) and isinstance(exc, error_type):
            return True
    return False


def _name(value: Enum | str) -> str:
    return str(value.value) if isinstance(value, Enum) else str(value)


def _clip(text: str, limit: int = 500) -> str:
    """``text`` on one line, cut to ``limit`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
