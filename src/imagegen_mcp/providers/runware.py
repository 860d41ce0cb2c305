"""Runware: cloud inference through ``runware-sdk``, Runware's current official SDK.

One client serves every generation. The first generation makes and connects it (nothing connects at start,
and the SDK is imported only then); concurrent generations share it (over the WebSocket the SDK matches
answers to tasks by ``taskUUID``, so they share one socket; over REST they share one HTTP connection pool);
the next generation after a drop reconnects it; :meth:`RunwareProvider.aclose` closes it.

The client reaches the inference endpoint and nothing else:

* every task names its ``taskType`` and its model by AIR id, so the SDK never asks Runware's schema registry
  (``schemas.runware.ai``) what a model is, and client-side validation (which fetches schemas from there)
  stays off;
* ``deliveryMethod`` is ``sync``: the answer is the images, not an acknowledgement to poll ``getResponse``
  with (the SDK's default, which polls from 1 s on, so no image would arrive sooner);
* the SDK never retries or reconnects by itself (``max_retries=0``, ``max_reconnect_attempts=0``): the
  service's fallback plan is the only retry, a drop fails the generations on it at once instead of leaving
  them waiting on reconnects, and no task is sent (and billed) twice;
* this module opens the WebSocket itself (the SDK's public ``ws_connect`` hook): it lifts websockets'
  1 MiB message cap (one 1024x1024 PNG as base64 is larger) and offers permessage-deflate only when
  ``RUNWARE_WS_COMPRESSION`` asks for it.

Images come back as ``RUNWARE_OUTPUT`` says: ``url`` (Runware answers with a link to its image host, fetched
here over the shared HTTP pool) or ``base64`` (inline in the answer). ``bench/README.md`` has the
measurements behind the defaults.

Each image is its own task (``numberResults`` 1) with its own seed, :meth:`GenerationRequest.seed_of`, all
sent at once over the one connection: Runware documents a task's ``seed`` but not how a batch derives the
seeds of its other images, so only this way does every reported seed reproduce its image alone. Runware's
seeds start at 1, so seed 0 travels as ``MAX_SEED + 1`` and is reported back as 0.

A cancelled generation (the client's cancel, a timeout) reaches the SDK as its cancel event, so the SDK
ends the call itself and forgets the task; the connection stays as it was. Runware finishes (and bills) the
task anyway: it has no way to stop one.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.metadata
import logging
import math
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

import anyio
import pybase64
from pydantic import Field, SecretStr

from imagegen_mcp import __version__
from imagegen_mcp.config import EnvSettings, Settings
from imagegen_mcp.errors import (
    AuthenticationError,
    ContentBlockedError,
    GenerationCancelledError,
    ImageGenError,
    InvalidRequestError,
    ProviderError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RateLimitedError,
    redact,
)
from imagegen_mcp.providers.base import (
    MAX_SEED,
    FoundModel,
    GeneratedImage,
    GenerationRequest,
    ImageInputs,
    ImageProvider,
    LoraSpec,
    ModelConfig,
    ModelQuery,
    Progress,
    ProviderInfo,
    ProviderResult,
    Requirement,
    VendorModel,
    decode_base64_images,
    decoded_while_arriving,
)

if TYPE_CHECKING:
    import aiohttp
    from PIL.Image import Image as PILImage
    from runware import Runware, RunwareError
    from websockets.asyncio.client import ClientConnection

    from imagegen_mcp.images import ArrivingBytes
    from imagegen_mcp.inputs import InputImage

logger = logging.getLogger(__name__)
#: The WebSocket's own logger. Never at DEBUG, where websockets logs every frame it sends, the one with the
#: API key included (and formats megabytes of frames for it).
socket_logger = logging.getLogger(f"{__name__}.websocket")
socket_logger.setLevel(logging.INFO)

DEFAULT_NEGATIVE_PROMPT = "worst quality, low quality, blurry"
DEFAULT_URL = "wss://ws-api.runware.ai/v1"
DEFAULT_HTTP_URL = "https://api.runware.ai/v1"
KEYS_URL = "https://my.runware.ai/keys"
WALLET_URL = "https://my.runware.ai/wallet"
USER_AGENT = f"imagegen-mcp/{__version__}"
#: The largest WebSocket message accepted (websockets' default, 1 MiB, is less than one 1024x1024 PNG as base64).
MAX_MESSAGE_BYTES = 64 * 2**20
#: The largest image fetched from Runware's image host.
MAX_IMAGE_BYTES = 64 * 2**20
#: How long closing the client may take at shutdown.
CLOSE_TIMEOUT_S = 5.0
#: What Runware's API uses when a task leaves steps and CFG out (api-reference); new config entries get them.
API_DEFAULTS: dict[str, Any] = {"default_steps": 20, "default_guidance": 7.0}
#: How long a model search answer is reused, and how many are kept.
SEARCH_CACHE_S = 600.0
SEARCH_CACHE_SIZE = 256
#: Runware's seeds start at 1; seed 0 travels as this one.
SEED_ZERO_ON_THE_WIRE = MAX_SEED + 1

Transport = Literal["websocket", "rest"]
Output = Literal["url", "base64"]
OUTPUT_TYPES: dict[Output, str] = {"url": "URL", "base64": "base64Data"}
T = TypeVar("T")


class RunwareSettings(EnvSettings):
    api_key: SecretStr | None = Field(None, alias="RUNWARE_API_KEY")
    transport: Transport = Field(
        "websocket",
        alias="RUNWARE_TRANSPORT",
        description="'websocket' (one socket shared by every generation) or 'rest' (one HTTPS POST per image).",
    )
    url: str = Field(DEFAULT_URL, alias="RUNWARE_URL", pattern=r"^wss?://")
    http_url: str = Field(DEFAULT_HTTP_URL, alias="RUNWARE_HTTP_URL", pattern=r"^https?://")
    output: Output = Field(
        "url",
        alias="RUNWARE_OUTPUT",
        description="'url': images are fetched from Runware's image host; 'base64': they come inline in the answer.",
    )
    ws_compression: bool = Field(
        False,
        alias="RUNWARE_WS_COMPRESSION",
        description="Offer permessage-deflate on the WebSocket.",
    )
    connect_timeout_s: float = Field(
        10.0,
        gt=0,
        le=300,
        alias="RUNWARE_CONNECT_TIMEOUT_S",
        description="Seconds to open the WebSocket and authenticate before giving up.",
    )


class RunwareModelConfig(ModelConfig):
    vendor_id_field: ClassVar[str | None] = "air"

    air: str = Field(description="Runware's AIR identifier of the model, e.g. 'runware:100@1'.")
    max_resolution: int = 1024
    supports_negative_prompt: bool = True
    default_negative_prompt: str | None = DEFAULT_NEGATIVE_PROMPT
    supports_loras: bool = True
    #: Runware's image-to-image (``seedImage`` and ``strength``) and inpainting (``maskImage``) work with its
    #: SD, SDXL and FLUX.1 checkpoints.
    inputs: ImageInputs = ImageInputs(image_to_image=True, inpaint=True)
    #: How an edit's images travel: ``seed_image`` (``seedImage``, ``maskImage``), or ``references``
    #: (``inputs.referenceImages``, the image to edit first: instruction-editing models such as FLUX Kontext).
    edit_input: Literal["seed_image", "references"] = "seed_image"
    #: The only sizes the model makes, as (width, height); a request gets the one nearest its aspect ratio.
    sizes: tuple[tuple[int, int], ...] = ()

    def size_for(self, width: int, height: int) -> tuple[int, int]:
        """The size the model makes for a request of ``width`` x ``height``."""
        if not self.sizes:
            return width, height
        return min(self.sizes, key=lambda size: (abs(math.log(size[0] / size[1] * height / width)), size))


RUNWARE_MODELS = (
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
        key="flux_kontext_dev",
        display_name="FLUX.1 Kontext [dev]",
        description="Edits an image by an instruction ('make the car red', 'put it on a beach'), keeping the "
        "rest; also generates from text. Use with edit_image.",
        air="runware:106@1",
        default_steps=28,
        default_guidance=2.5,
        size_multiple=16,
        max_resolution=1568,
        supports_negative_prompt=False,
        default_negative_prompt=None,
        inputs=ImageInputs(instruction_edit=True),
        edit_input="references",
    ),
    RunwareModelConfig(
        key="flux_kontext_pro",
        display_name="FLUX.1 Kontext [pro]",
        description="Black Forest Labs' hosted Kontext: instruction edits of higher fidelity than [dev], at nine "
        "fixed sizes around one megapixel (the nearest to the input's shape is used). $0.04 per image.",
        air="bfl:3@1",
        default_steps=None,
        default_guidance=None,
        size_multiple=16,
        max_resolution=1568,
        supports_negative_prompt=False,
        default_negative_prompt=None,
        supports_loras=False,
        inputs=ImageInputs(instruction_edit=True),
        edit_input="references",
        sizes=(
            (1568, 672),
            (1392, 752),
            (1184, 880),
            (1248, 832),
            (1024, 1024),
            (832, 1248),
            (880, 1184),
            (752, 1392),
            (672, 1568),
        ),
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


@functools.cache
def _installed(distribution: str) -> bool:
    """Cached: installed packages do not change while the server runs (an install needs a restart anyway)."""
    try:
        importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def runware_sdk_requirement() -> Requirement:
    """``runware-sdk`` is installed. Checked by distribution: the old ``runware`` SDK has the same import name."""
    steps = ["Install the Runware extra: pip install 'imagegen-mcp[runware]'"]
    if _installed("runware"):
        steps.insert(0, "Uninstall the old Runware SDK, which has the same import name: pip uninstall runware")
    return Requirement(
        met=_installed("runware-sdk"), reason="the runware-sdk package is not installed", steps=tuple(steps)
    )


def wire_seed(seed: int) -> int:
    return seed or SEED_ZERO_ON_THE_WIRE


def reported_seed(seed: int) -> int | None:
    """Our seed for a seed Runware reports; ``None`` when it is outside what a caller can pass back."""
    if seed == SEED_ZERO_ON_THE_WIRE:
        return 0
    return seed if 0 < seed <= MAX_SEED else None


def _found(provider: str, item: dict[str, Any]) -> FoundModel:
    """One ``modelSearch`` result as a :class:`FoundModel` (Runware gives defaults for checkpoints only)."""

    def number(name: str) -> float | None:
        value = item.get(name)
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None

    def whole(name: str) -> int | None:
        value = number(name)
        return int(value) if value is not None else None

    air = str(item.get("air", ""))
    return FoundModel(
        id=f"{provider}:{air}",
        vendor_id=air,
        name=str(item.get("name") or air),
        version=str(item["version"]) if item.get("version") else None,
        category=str(item.get("category") or "checkpoint"),
        architecture=str(item["architecture"]) if item.get("architecture") else None,
        tags=[str(tag) for tag in item.get("tags") or []],
        default_width=whole("defaultWidth"),
        default_height=whole("defaultHeight"),
        default_steps=whole("defaultSteps"),
        default_guidance=number("defaultCFG"),
        trigger_words=str(item["positiveTriggerWords"]) if item.get("positiveTriggerWords") else None,
    )


def is_air(model_id: str) -> bool:
    """An AIR id (``source:model@version``), the form the SDK sends as it is: anything else it would try to
    resolve through Runware's schema registry first."""
    return ":" in model_id and "@" in model_id


@dataclass(frozen=True)
class _Answer:
    image: GeneratedImage
    cost: float | None
    #: Said when Runware reports a seed a caller cannot pass back.
    note: str | None


class _Client:
    """The SDK client, the HTTP pool it shares with image downloads, and the HTTP status its last WebSocket
    handshake was refused with (the SDK reports a refusal as a bare connection failure)."""

    def __init__(self, config: RunwareSettings, api_key: str) -> None:
        import aiohttp
        from runware import SDK_VERSION, RuntimeDependencies, Runware

        self._compression = config.ws_compression
        self._user_agent = f"{USER_AGENT} runware-python/{SDK_VERSION}"
        self.refused_status: int | None = None
        self.http = aiohttp.ClientSession()
        #: The downloads decoded at once (see :func:`decoded_while_arriving`).
        self.decoders = anyio.CapacityLimiter(os.cpu_count() or 1)
        self.sdk = Runware(
            api_key=api_key,  # never empty (the SDK would read RUNWARE_API_KEY from the environment itself)
            transport=config.transport,
            ws_base_url=config.url,
            http_base_url=config.http_url,
            max_retries=0,
            max_reconnect_attempts=0,
            # Longer than RUNWARE_CONNECT_TIMEOUT_S, so a silent server is our timeout, not the SDK's ``auth``.
            auth_timeout=int(config.connect_timeout_s * 1000) + 5000,
            user_agent_prefix=USER_AGENT,
            dependencies=RuntimeDependencies(session=self.http, ws_connect=self._ws_connect),
        )

    async def _ws_connect(self, url: str) -> ClientConnection:
        from websockets.asyncio.client import connect
        from websockets.exceptions import InvalidStatus

        self.refused_status = None
        try:
            return await connect(
                url,
                max_size=MAX_MESSAGE_BYTES,
                compression="deflate" if self._compression else None,
                open_timeout=None,  # RUNWARE_CONNECT_TIMEOUT_S bounds the whole connect, authentication included
                additional_headers={"User-Agent": self._user_agent},
                logger=socket_logger,
            )
        except InvalidStatus as refused:
            self.refused_status = refused.response.status_code
            raise

    async def close(self) -> None:
        # Shielded: closing must finish even while the task that closes is being cancelled.
        with anyio.move_on_after(CLOSE_TIMEOUT_S, shield=True):
            try:
                await self.sdk.close()
            except Exception:
                logger.warning("closing the Runware client failed", exc_info=True)
            await self.http.close()


class RunwareProvider(ImageProvider[RunwareModelConfig]):
    info = ProviderInfo(
        name="runware",
        display_name="Runware",
        description="Cloud inference on Runware (FLUX, Juggernaut, HiDream); fast and cheap per image.",
        default_model="juggernaut_pro",
        priority=1,
        searchable=True,
    )

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.config = settings.provider_settings(RunwareSettings)
        self._client: _Client | None = None
        self._connecting = anyio.Lock()
        #: Model search answers by query, oldest first, with when they came.
        self._searches: dict[ModelQuery, tuple[float, list[FoundModel]]] = {}

    def builtin_models(self) -> Sequence[RunwareModelConfig]:
        return RUNWARE_MODELS

    def requirements(self) -> list[Requirement]:
        return [
            runware_sdk_requirement(),
            Requirement(
                met=self.config.api_key is not None,
                reason="RUNWARE_API_KEY is not set",
                steps=(
                    f"Create an API key at {KEYS_URL} and set RUNWARE_API_KEY in the server's "
                    "environment (the 'env' block of your MCP client config)",
                ),
            ),
        ]

    def lora_problem(self, lora: LoraSpec) -> str | None:
        if lora.path is not None or lora.model is None:
            return "Runware takes LoRAs by AIR id (search_models with category 'lora' finds them), not files"
        if not is_air(lora.model):
            return f"{lora.model!r} is not an AIR id of the form source:model@version"
        return None

    def new_model_defaults(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        return {**super().new_model_defaults(fields), **API_DEFAULTS}

    async def vendor_model(self, vendor_id: str) -> VendorModel[RunwareModelConfig] | None:
        """Any AIR id: Runware's model search gives its recommended steps, guidance and size when it knows the
        model; otherwise Runware's own defaults apply. The model search answer is cached."""
        if not is_air(vendor_id):
            return None
        found: FoundModel | None = None
        try:
            results = await self.search_models(ModelQuery(query=vendor_id, limit=50))
            found = next((result for result in results if result.vendor_id == vendor_id), None)
        except ImageGenError as error:  # the generation itself reports what is wrong with the connection
            logger.info("model search for %s failed: %s", vendor_id, error.message)
        if found is not None and found.category != "checkpoint":
            raise InvalidRequestError(
                f"{vendor_id} is a {found.category} ({found.name}), not a model to generate with.",
                model=f"{self.info.name}:{vendor_id}",
                remediation=[f'Pass it in loras: [{{"model": "{vendor_id}", "weight": 0.8}}]'],
            )
        fields: dict[str, Any] = {"key": "vendor_model", "display_name": vendor_id, "air": vendor_id, **API_DEFAULTS}
        if found is not None:
            fields["display_name"] = found.name
            known = {
                "default_steps": found.default_steps,
                "default_guidance": found.default_guidance,
                "default_width": found.default_width,
                "default_height": found.default_height,
            }
            fields |= {name: value for name, value in known.items() if value is not None}
            fields["max_resolution"] = max(1024, fields.get("default_width", 0), fields.get("default_height", 0))
        # The key is the AIR id itself (results name the model as it was asked for); the key pattern is for
        # configured models, so the validated config takes it without validation.
        model = RunwareModelConfig.model_validate(fields).model_copy(update={"key": vendor_id})
        source = f"Runware's model search ({found.name})" if found is not None else "Runware's defaults"
        note = (
            f"{vendor_id} has no entry in the configuration: steps {model.default_steps} and guidance "
            f"{model.default_guidance:g} at {model.default_width}x{model.default_height} from {source}"
        )
        return VendorModel(model, note)

    async def search_models(self, query: ModelQuery) -> list[FoundModel]:
        """Runware's ``modelSearch``, with answers cached for :data:`SEARCH_CACHE_S`."""
        cached = self._searches.get(query)
        if cached is not None and time.monotonic() - cached[0] < SEARCH_CACHE_S:
            return cached[1]
        client = await self._connect(Progress())
        params: dict[str, Any] = {"search": query.query, "limit": query.limit}
        params |= {
            name: value for name, value in (("category", query.category), ("architecture", query.architecture)) if value
        }
        try:
            (answer, *_) = await client.sdk.model_search(params)  # type: ignore[arg-type]
        except Exception as exc:
            raise self._error(exc, client, None) from None
        found = [_found(self.info.name, item) for item in answer.get("results") or [] if isinstance(item, dict)]
        self._searches.pop(query, None)  # a refreshed answer goes to the end, as the newest
        self._searches[query] = (time.monotonic(), found)
        while len(self._searches) > SEARCH_CACHE_SIZE:
            del self._searches[next(iter(self._searches))]
        return found

    async def generate(
        self, request: GenerationRequest, model: RunwareModelConfig, progress: Progress
    ) -> ProviderResult:
        if not is_air(model.air):
            raise self.retired_error(model, "it is not an AIR identifier of the form source:model@version")
        client = await self._connect(progress)
        seeds = [request.seed_of(index) for index in range(request.count)]
        fields = await self._edit_inputs(client, request, model, progress)
        size = model.size_for(request.width, request.height)
        notes = []
        if size != (request.width, request.height):
            notes.append(
                f"size {request.width}x{request.height} mapped to {size[0]}x{size[1]}, the nearest in shape of the "
                f"sizes {self.info.name}:{model.key} makes"
            )
        fields |= {"width": size[0], "height": size[1]}
        tasks = [self._task(request, model, seed, fields) for seed in seeds]
        await progress.update(f"submitted to Runware ({request.count} image(s) with {model.air})", 0.1)
        answers = await all_of(
            [functools.partial(self._image, client, task, model, seed) for task, seed in zip(tasks, seeds, strict=True)]
        )
        await progress.update(f"received {len(answers)} image(s) from Runware", 0.95)
        costs = [answer.cost for answer in answers if answer.cost is not None]
        return ProviderResult(
            images=[answer.image for answer in answers],
            cost=sum(costs) if costs else None,
            adjustments=[*notes, *(answer.note for answer in answers if answer.note)],
            details={"air": model.air, "task_uuids": [task["taskUUID"] for task in tasks]},
            size=size,
        )

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    # -- one image ----------------------------------------------------------------------------------

    def _task(
        self, request: GenerationRequest, model: RunwareModelConfig, seed: int, fields: dict[str, Any]
    ) -> dict[str, Any]:
        """One image's task; ``fields`` (the edit's images, the size) go over the request's own."""
        task: dict[str, Any] = {
            "taskType": "imageInference",
            "taskUUID": str(uuid.uuid4()),
            "deliveryMethod": "sync",
            "model": model.air,
            "positivePrompt": request.prompt,
            "width": request.width,
            "height": request.height,
            "numberResults": 1,
            "seed": wire_seed(seed),
            "outputType": OUTPUT_TYPES[self.config.output],
            "outputFormat": "PNG",
            "includeCost": True,
        }
        optional = {
            "negativePrompt": request.negative_prompt,
            "steps": request.steps,
            "CFGScale": request.guidance_scale,
            "lora": [{"model": lora.model, "weight": lora.weight} for lora in request.loras] or None,
        }
        return task | {name: value for name, value in optional.items() if value is not None} | fields

    async def _image(self, client: _Client, task: dict[str, Any], model: RunwareModelConfig, asked: int) -> _Answer:
        """One task's image; ``asked`` is the seed it was asked for (``task`` has it as Runware takes it)."""
        try:
            items = await run_task(client.sdk, task)
        except Exception as exc:
            raise self._error(exc, client, model) from None
        item = next((item for item in items if item.get("imageURL") or item.get("imageBase64Data")), None)
        if item is None:
            raise ProviderError(
                "Runware answered without an image.",
                retryable=True,
                remediation=["Try again"],
                details={"task_uuid": task["taskUUID"]},
            )
        reported = item.get("seed")
        seed = reported_seed(reported) if isinstance(reported, int) else asked
        note = None
        if seed is None:
            note = f"Runware reports seed {reported} for an image; seed {asked} was asked for and is the one reported"
            seed = asked
        if "imageBase64Data" in item:
            (image,) = await decode_base64_images(self.info.name, [(str(item["imageBase64Data"]), "image/png", seed)])
        else:
            data, decoded = await self._download(client, str(item["imageURL"]))
            image = GeneratedImage(data, "image/png", seed, decoded)
        cost = item.get("cost")
        return _Answer(image, float(cost) if isinstance(cost, int | float) else None, note)

    async def _edit_inputs(
        self, client: _Client, request: GenerationRequest, model: RunwareModelConfig, progress: Progress
    ) -> dict[str, Any]:
        """An edit's images as the task fields that carry them. Each is uploaded once (``mediaStorage``) and
        named by its UUID, so the tasks of a count > 1 share one upload instead of each carrying the bytes."""
        edit = request.edit
        if edit is None:
            return {}
        await progress.update("uploading the input image(s) to Runware", 0.07)
        image, *references = await all_of(
            [functools.partial(self._upload, client, item) for item in (edit.image, *edit.references)]
        )
        if model.edit_input == "references":
            return {"inputs": {"referenceImages": [image, *references]}}
        fields: dict[str, Any] = {"seedImage": image, "strength": edit.strength}
        if edit.mask is not None:
            fields["maskImage"] = await self._upload(client, edit.mask)
        return fields

    async def _upload(self, client: _Client, image: InputImage) -> str:
        data_uri = f"data:{image.mime_type};base64,{pybase64.b64encode(image.data).decode()}"
        try:
            (item, *_) = await client.sdk.media_storage({"operation": "upload", "media": data_uri})
        except Exception as exc:
            raise self._error(exc, client, None) from None
        uuid_ = item.get("mediaUUID")
        if not isinstance(uuid_, str):
            raise ProviderError("Runware stored the input image but answered without its UUID.", retryable=True)
        return uuid_

    async def _download(self, client: _Client, url: str) -> tuple[bytes, PILImage | None]:
        """The image behind ``url``, and its pixels, decoded while it downloads."""
        import aiohttp

        fix = [
            "Try again; this machine must reach Runware's image host (im.runware.ai)",
            "Or set RUNWARE_OUTPUT=base64 to receive images inside Runware's answer",
        ]
        if not url.startswith(("https://", "http://")):
            raise ProviderError(f"Runware answered with an image link that is not HTTP(S): {url!r}.", remediation=fix)
        # Bounded like the connection to Runware: an unreachable image host fails fast instead of stalling.
        limit = self.config.connect_timeout_s
        try:
            async with client.http.get(
                url, timeout=aiohttp.ClientTimeout(sock_connect=limit, sock_read=limit)
            ) as response:
                if response.status != 200:
                    raise ProviderError(
                        f"Runware's image host answered HTTP {response.status} for {url}.",
                        retryable=True,
                        remediation=fix,
                    )
                return await decoded_while_arriving(
                    functools.partial(_read_capped, response, MAX_IMAGE_BYTES), client.decoders
                )
        except aiohttp.ClientError as exc:
            raise ProviderError(
                f"Could not fetch the image from {url}: {str(exc) or type(exc).__name__}.",
                retryable=True,
                remediation=fix,
            ) from None

    # -- the shared client --------------------------------------------------------------------------

    async def _connect(self, progress: Progress) -> _Client:
        """The connected client, connecting it first when it is not (one connector at a time)."""
        async with self._connecting:
            client = self._client
            if client is None or not client.sdk.is_connected:  # over REST: until the first generation
                if client is None:
                    if self.config.api_key is None:
                        raise ProviderUnavailableError("RUNWARE_API_KEY is not set", remediation=self.check().steps)
                    client = self._client = _Client(self.config, self.config.api_key.get_secret_value())
                await progress.update("connecting to Runware", 0.05)
                await self._open(client)
            return client

    async def _open(self, client: _Client) -> None:
        try:
            with anyio.fail_after(self.config.connect_timeout_s):
                await client.sdk.connect()  # WebSocket: open and authenticate; REST: nothing to open yet
        except BaseException as exc:
            # Replaced, not reused: the SDK's ``close`` works once only, and the next attempt starts clean.
            self._client = None
            await client.close()
            error = self._error(exc, client, None)
            if error is exc:
                raise
            raise error from None
        logger.info("connected to Runware at %s", self._endpoint)

    # -- errors -------------------------------------------------------------------------------------

    def _redact(self, text: str) -> str:
        return redact(text, self.settings.secrets())

    def _error(self, exc: BaseException, client: _Client, model: RunwareModelConfig | None) -> BaseException:
        """What the service sees for an exception from connecting or running a task (``exc`` itself when it is
        none of the SDK's, the network's or ours)."""
        import aiohttp
        from runware import RunwareError

        if isinstance(exc, ImageGenError):
            return exc
        if isinstance(exc, RunwareError):
            return self._runware_error(exc, client, model)
        if isinstance(exc, TimeoutError):  # our connect deadline; before OSError, of which it is a subclass
            return ProviderTimeoutError(
                f"Runware at {self._endpoint} did not complete the connection within "
                f"{self.config.connect_timeout_s:g} s.",
                remediation=[self._check_endpoint, "Raise RUNWARE_CONNECT_TIMEOUT_S if the network is just slow"],
            )
        if isinstance(exc, aiohttp.ClientError | OSError):  # over REST the SDK lets the network's errors through
            return ProviderError(
                f"Could not reach Runware at {self._endpoint}: {self._redact(str(exc) or type(exc).__name__)}.",
                retryable=True,
                remediation=[self._check_endpoint, "Try again in a moment"],
            )
        return exc

    @property
    def _endpoint(self) -> str:
        return self.config.url if self.config.transport == "websocket" else self.config.http_url

    @property
    def _check_endpoint(self) -> str:
        variable = "RUNWARE_URL" if self.config.transport == "websocket" else "RUNWARE_HTTP_URL"
        return f"Check your network and {variable} (now {self._endpoint})"

    def _runware_error(self, exc: RunwareError, client: _Client, model: RunwareModelConfig | None) -> ImageGenError:
        text = f"Runware: {self._redact(exc.message)}"
        details: dict[str, Any] = {"sdk_code": exc.code}
        details |= {
            name: value for name, value in (("parameter", exc.parameter), ("task_uuid", exc.task_uuid)) if value
        }
        status = exc.status_code if exc.status_code is not None else client.refused_status
        if status is not None:
            details["http_status"] = status
        match exc.code:
            case "auth":
                return self._auth_error(text, details)
            case "quota":
                return self._credits_error(text, details)
            case "rateLimit":
                return RateLimitedError(
                    text, retry_after_s=exc.retry_after, remediation=["Wait a moment and try again"], details=details
                )
            case "safety":
                return ContentBlockedError(
                    text, remediation=["Rephrase the prompt; Runware's content checks refused it"], details=details
                )
            case "timeout":
                return ProviderTimeoutError(text, remediation=["Try again"], details=details)
            case "validation" | "notFound" if exc.parameter == "model" and model is not None:
                return self.retired_error(model, text)
            case "validation":
                fix = f"Change '{exc.parameter}' as the message says" if exc.parameter else "Change the request"
                return InvalidRequestError(text, remediation=[fix], details=details)
            case "aborted":
                return GenerationCancelledError("The Runware task was cancelled.", details=details)
            case "connection" if status is None:
                return ProviderError(
                    f"The connection to Runware at {self._endpoint} failed or was lost ({text}).",
                    retryable=True,
                    remediation=[self._check_endpoint, "Try again: the next request opens a new connection"],
                    details=details,
                )
            case "provider" | "serverError":
                return ProviderError(text, retryable=True, remediation=["Try again in a moment"], details=details)
        # ``connection`` refused with an HTTP status, ``notFound`` of a task, and ``unknown``: the SDK keeps
        # no code of Runware's for those (a provider timeout, ``timeoutProvider``, is one), only the status.
        return self._status_error(text, status, details)

    def _status_error(self, text: str, status: int | None, details: dict[str, Any]) -> ImageGenError:
        if status is not None:
            text = f"{text} (HTTP {status})"
        if status in (401, 403):
            return self._auth_error(text, details)
        if status == 402:
            return self._credits_error(text, details)
        if status in (408, 429):
            return RateLimitedError(text, remediation=["Wait a moment and try again"], details=details)
        retryable = status is not None and status >= 500
        return ProviderError(
            text, retryable=retryable, remediation=[self._check_endpoint, "Try again later"], details=details
        )

    @staticmethod
    def _auth_error(text: str, details: dict[str, Any]) -> AuthenticationError:
        return AuthenticationError(
            text,
            remediation=[
                "Check RUNWARE_API_KEY in the server's environment (the 'env' block of your MCP client config): "
                "it must be a current key of your Runware account",
                f"Create or copy a key at {KEYS_URL}",
            ],
            details=details,
        )

    @staticmethod
    def _credits_error(text: str, details: dict[str, Any]) -> ProviderError:
        return ProviderError(
            text,
            retryable=False,
            remediation=[
                f"Add credits to the Runware account at {WALLET_URL}",
                "Or choose another provider or model (see list_providers)",
            ],
            details=details,
        )


async def run_task(sdk: Runware, task: dict[str, Any]) -> list[dict[str, Any]]:
    """Run one task. A cancellation of the caller reaches the SDK as its cancel event: the SDK ends the call
    at its own checkpoint (it stops waiting and forgets the task) instead of at whatever it was awaiting."""
    from runware import RunOptions

    cancel = asyncio.Event()
    call = asyncio.ensure_future(sdk.run(task, RunOptions(cancel_event=cancel)))
    try:
        return await asyncio.shield(call)
    except anyio.get_cancelled_exc_class():
        cancel.set()
        with anyio.CancelScope(shield=True):
            await asyncio.wait({call})
        if not call.cancelled():
            call.exception()  # ``aborted`` (or an answer that came meanwhile): this generation is cancelled anyway
        raise


async def all_of(calls: Sequence[Callable[[], Awaitable[T]]]) -> list[T]:
    """Every call's result, run concurrently; the first failure cancels the others and is raised as it is."""
    results: dict[int, T] = {}
    failure: list[Exception] = []

    async def one(index: int, call: Callable[[], Awaitable[T]]) -> None:
        try:
            results[index] = await call()
        except Exception as exc:
            failure.append(exc)
            group.cancel_scope.cancel()

    async with anyio.create_task_group() as group:
        for index, call in enumerate(calls):
            group.start_soon(one, index, call)
    if failure:
        raise failure[0]
    return [results[index] for index in range(len(calls))]


async def _read_capped(response: aiohttp.ClientResponse, limit: int, into: ArrivingBytes) -> None:
    """The response's body into ``into``, 256 KiB at a time as it arrives (parts small enough for the decode to
    follow the download, few enough that handing them over costs little)."""
    if (response.content_length or 0) > limit:
        raise ProviderError(f"Runware's image is larger than {limit} bytes.", remediation=["Ask for a smaller image"])
    size = 0
    async for part in response.content.iter_chunked(256 * 1024):
        size += len(part)
        if size > limit:
            raise ProviderError(
                f"Runware's image is larger than {limit} bytes.", remediation=["Ask for a smaller image"]
            )
        into.feed(part)
