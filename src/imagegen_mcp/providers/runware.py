"""Runware: cloud inference over the ``runware`` SDK's WebSocket connection.

One connection serves every generation. It is opened and authenticated by the first generation (nothing
connects at start), shared by concurrent ones (the SDK matches answers to tasks by ``taskUUID``) and
closed by :meth:`RunwareProvider.aclose`. When it closes for any reason it is discarded, and the next
generation opens a fresh one.

Retries happen in one place only, the service's fallback plan. The SDK's public ``imageInference`` wraps
each task in a retry loop of its own: after a drop it re-sends the task over a new socket (up to 10 times),
a refused connection is retried with backoff for about 12 s, a rejected key costs three connections, and
all of them end as a bare ``ConnectionError`` (a refused one's text blames the key); ``connect`` has no
timeout at all.
So this module connects and authenticates itself, under ``RUNWARE_CONNECT_TIMEOUT_S``, and submits each
task once through the single attempt that loop wraps: every failure becomes one typed error that the
service and the agent can act on.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, ClassVar

import anyio
from pydantic import Field, SecretStr

from imagegen_mcp.config import EnvSettings, Settings
from imagegen_mcp.errors import (
    AuthenticationError,
    ContentBlockedError,
    ImageGenError,
    InvalidRequestError,
    ProviderError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RateLimitedError,
    redact,
)
from imagegen_mcp.providers.base import (
    GenerationRequest,
    ImageProvider,
    ModelConfig,
    Progress,
    ProviderInfo,
    ProviderResult,
    Requirement,
    decode_base64_images,
    sdk_requirement,
)

logger = logging.getLogger(__name__)

DEFAULT_NEGATIVE_PROMPT = "worst quality, low quality, blurry"
DEFAULT_URL = "wss://ws-api.runware.ai/v1"
KEYS_URL = "https://my.runware.ai/keys"
WALLET_URL = "https://my.runware.ai/wallet"
#: How long closing a connection may take at shutdown or after a drop (the SDK waits 1 s for the close).
CLOSE_TIMEOUT_S = 5.0


class RunwareSettings(EnvSettings):
    api_key: SecretStr | None = Field(None, alias="RUNWARE_API_KEY")
    url: str = Field(DEFAULT_URL, alias="RUNWARE_URL", pattern=r"^wss?://")
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
        key="hidream_fast",
        display_name="HiDream-I1 Fast",
        description="HiDream-I1 fast variant; strong at text and illustration.",
        air="runware:97@3",
        default_steps=8,
        default_guidance=7.0,
    ),
)


class _Connection:
    """An SDK client whose WebSocket is open and authenticated. It is never reconnected in place."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.closed = False
        self._watcher: asyncio.Task[None] | None = None

    @property
    def usable(self) -> bool:
        return not self.closed and bool(self.client.connected())

    def watch(self, on_close: Callable[[], Awaitable[None]]) -> None:
        """Call ``on_close`` as soon as the socket closes, whoever closes it and however.

        The SDK notices a clean close from the server only through its 30 s ping timeout, and meanwhile
        leaves the tasks sent over that socket waiting; closing the client fails them at once.
        """
        socket = self.client._ws

        async def wait() -> None:
            await socket.wait_closed()
            await on_close()

        self._watcher = asyncio.get_running_loop().create_task(wait(), name="runware-connection-watch")

    async def infer(self, task: Any) -> list[Any]:
        """Submit one ``imageInference`` task and wait for all its images."""
        # Checked with no await before the SDK's own check, so the SDK never reopens this client by itself.
        if not self.usable:
            raise ConnectionError("the Runware connection is closed")
        # The single attempt that the SDK's public ``imageInference`` retries (see the module docstring).
        images: list[Any] = await self.client._imageInference(task)
        return images

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._watcher is not None and self._watcher is not asyncio.current_task():
            self._watcher.cancel()
        # Shielded: closing must finish even when the generation that found the connection dead is
        # being cancelled. ``disconnect`` also fails the tasks still waiting on this connection.
        with anyio.move_on_after(CLOSE_TIMEOUT_S, shield=True):
            handler = self.client._message_handler_task
            if handler is not None and not self.client.isWebsocketReadyState():
                # After a drop the SDK's message handler runs its close handling, in which it cancels and
                # awaits itself; a ``disconnect`` awaiting it meanwhile fails half-way. Let it finish first.
                await asyncio.wait({handler})
            try:
                await self.client.disconnect()
            except Exception:
                logger.warning("closing the Runware connection failed", exc_info=True)


class RunwareProvider(ImageProvider[RunwareModelConfig]):
    info = ProviderInfo(
        name="runware",
        display_name="Runware",
        description="Cloud inference on Runware (FLUX, Juggernaut, HiDream); fast and cheap per image.",
        default_model="juggernaut_pro",
        priority=1,
    )

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.config = settings.provider_settings(RunwareSettings)
        self._connection: _Connection | None = None
        self._connecting = anyio.Lock()

    def builtin_models(self) -> Sequence[RunwareModelConfig]:
        return RUNWARE_MODELS

    def requirements(self) -> list[Requirement]:
        return [
            sdk_requirement("runware", "runware", "runware"),
            Requirement(
                met=self.config.api_key is not None,
                reason="RUNWARE_API_KEY is not set",
                steps=(
                    f"Create an API key at {KEYS_URL} and set RUNWARE_API_KEY in the server's "
                    "environment (the 'env' block of your MCP client config)",
                ),
            ),
        ]

    async def generate(
        self, request: GenerationRequest, model: RunwareModelConfig, progress: Progress
    ) -> ProviderResult:
        from runware import IImageInference, RunwareAPIError

        task = IImageInference(
            taskUUID=str(uuid.uuid4()),
            model=model.air,
            positivePrompt=request.prompt,
            negativePrompt=request.negative_prompt,
            width=request.width,
            height=request.height,
            steps=request.steps,
            CFGScale=request.guidance_scale,
            seed=request.seed,
            numberResults=request.count,
            outputType="base64Data",
            outputFormat="PNG",
            includeCost=True,
        )
        connection = await self._connect(progress)
        await progress.update(f"submitted to Runware ({request.count} image(s) with {model.air})", 0.1)
        try:
            results = await connection.infer(task)
        except ConnectionError:
            await self._discard(connection)
            raise ProviderError(
                "The connection to Runware was lost before the images arrived.",
                retryable=True,
                remediation=["Try again: the next request opens a new connection"],
                details={"task_uuid": task.taskUUID},
            ) from None
        except RunwareAPIError as exc:
            raise self._task_error(exc.error_data) from None
        await progress.update(f"received {len(results)} image(s) from Runware", 0.95)
        costs = [float(item.cost) for item in results if item.cost is not None]
        images = await decode_base64_images(
            self.info.name,
            [
                (item.imageBase64Data, "image/png", int(item.seed) if item.seed is not None else request.seed_of(index))
                for index, item in enumerate(results)
            ],
        )
        return ProviderResult(
            images=images,
            cost=sum(costs) if costs else None,
            details={"air": model.air, "task_uuid": task.taskUUID},
        )

    async def aclose(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.close()

    # -- the shared connection ----------------------------------------------------------------------

    async def _connect(self, progress: Progress) -> _Connection:
        """The open connection, opening one first when there is none (one opener at a time)."""
        async with self._connecting:
            connection = self._connection
            if connection is not None and connection.usable:
                return connection
            if connection is not None:
                await self._discard(connection)
            await progress.update("connecting to Runware", 0.05)
            self._connection = await self._open()
            return self._connection

    async def _open(self) -> _Connection:
        if self.config.api_key is None:
            raise ProviderUnavailableError("RUNWARE_API_KEY is not set", remediation=self.check().steps)
        from runware import Runware

        # CRITICAL only: at DEBUG the SDK logs every message it sends, the authentication with the key too.
        client = Runware(
            api_key=self.config.api_key.get_secret_value(), url=self.config.url, log_level=logging.CRITICAL
        )
        connection = _Connection(client)
        try:
            with anyio.fail_after(self.config.connect_timeout_s):
                await client.connect()
            rejection = client._invalidAPIkey
            if rejection:
                raise AuthenticationError(
                    f"Runware rejected the API key: {self._redact(str(rejection))}",
                    remediation=[
                        "Check RUNWARE_API_KEY in the server's environment (the 'env' block of your MCP "
                        "client config): it must be a current key of your Runware account",
                        f"Create or copy a key at {KEYS_URL}",
                    ],
                )
            if not client.connected():
                raise ConnectionError("the connection closed during authentication")
        except BaseException as exc:
            await connection.close()
            error = self._connection_error(exc)
            if error is None:
                raise
            raise error from None
        connection.watch(lambda: self._discard(connection))
        logger.info("connected to Runware at %s", self.config.url)
        return connection

    async def _discard(self, connection: _Connection) -> None:
        if self._connection is connection:
            self._connection = None
            logger.warning("the Runware connection closed; the next request opens a new one")
        await connection.close()

    # -- errors -------------------------------------------------------------------------------------

    def _redact(self, text: str) -> str:
        return redact(text, self.settings.secrets())

    def _connection_error(self, exc: BaseException) -> ImageGenError | None:
        """What the service sees when the connection could not be opened; ``None``: let ``exc`` through."""
        from websockets.exceptions import InvalidStatus, WebSocketException

        if isinstance(exc, ImageGenError):
            return exc
        url = self.config.url
        check_url = f"Check your network and RUNWARE_URL (now {url})"
        if isinstance(exc, TimeoutError):  # before OSError, of which it is a subclass
            return ProviderTimeoutError(
                f"Runware at {url} did not complete the connection and authentication within "
                f"{self.config.connect_timeout_s:g} s.",
                remediation=[check_url, "Raise RUNWARE_CONNECT_TIMEOUT_S if the network is just slow"],
            )
        if isinstance(exc, InvalidStatus):
            status = exc.response.status_code
            refused = f"Runware at {url} refused the WebSocket connection with HTTP {status}."
            if status in (401, 403):
                return AuthenticationError(refused, remediation=[f"Check RUNWARE_API_KEY; keys are at {KEYS_URL}"])
            if status == 429:
                return RateLimitedError(refused, remediation=["Wait a moment and try again"])
            return ProviderError(refused, retryable=status >= 500, remediation=[check_url, "Try again later"])
        if isinstance(exc, OSError | WebSocketException):  # ConnectionError is an OSError
            return ProviderError(
                f"Could not connect to Runware at {url}: {self._redact(str(exc) or type(exc).__name__)}.",
                retryable=True,
                remediation=[check_url, "Try again in a moment"],
            )
        return None

    def _task_error(self, error: Mapping[str, Any]) -> ImageGenError:
        """Map an error object Runware returned for a task (``code``, ``message``, ``parameter``, ...)."""
        code = str(error.get("code") or "")
        message = self._redact(str(error.get("message") or code or "unknown error"))
        details = {name: error[name] for name in ("code", "parameter", "taskUUID") if error.get(name)}
        text = f"Runware: {message}"
        kind = code.lower()
        if "apikey" in kind or kind in ("unauthorized", "forbidden"):
            return AuthenticationError(
                text, remediation=[f"Check RUNWARE_API_KEY; keys are at {KEYS_URL}"], details=details
            )
        if "credit" in kind or "balance" in kind:
            return ProviderError(
                text,
                retryable=False,
                remediation=[
                    f"Add credits to the Runware account at {WALLET_URL}",
                    "Or choose another provider or model (see list_providers)",
                ],
                details=details,
            )
        if "ratelimit" in kind or "toomany" in kind:
            return RateLimitedError(text, remediation=["Wait a moment and try again"], details=details)
        if "timeout" in kind:
            return ProviderTimeoutError(text, remediation=["Try again"], details=details)
        if any(word in kind for word in ("nsfw", "safety", "moderation")):
            return ContentBlockedError(text, remediation=["Rephrase the prompt"], details=details)
        if kind.startswith(("invalid", "missing", "unsupported")) or error.get("parameter"):
            parameter = error.get("parameter")
            fix = f"Change '{parameter}' as the message says" if parameter else "Change the request"
            return InvalidRequestError(text, remediation=[fix], details=details)
        retryable = any(word in kind for word in ("internal", "unavailable", "server"))
        return ProviderError(text, retryable=retryable, remediation=["Try again later"], details=details)
