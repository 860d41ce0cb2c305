"""A loopback Runware API for tests: ``runware-sdk`` talks to it over both of its transports.

One background-thread server answers on one port, at the paths Runware uses: a WebSocket at ``/v1``
(:attr:`FakeRunwareAPI.ws_url`) and the REST endpoint, ``POST /v1`` (:attr:`FakeRunwareAPI.http_url`).
Both speak the JSON task protocol as Runware documents it: a request is a JSON array of task objects; an
answer is an object with a ``data`` array of results and/or an ``errors`` array of error objects (``code``,
``message``, ``parameter``, ``taskType``, ``taskUUID``, ``documentation``).

* WebSocket: the first task must be ``authentication`` with the ``apiKey``; the answer carries a
  ``connectionSessionUUID`` (a known one sent back resumes the session). ``ping`` is answered with ``pong``.
* REST: the key comes as ``Authorization: Bearer <key>`` (or as a leading ``authentication`` task); a
  failure is an HTTP status (400, 401, 402, 404, 429, 5xx) with the same ``errors`` body.
* ``imageInference`` is validated the way the API does (known AIR id, prompt length, sizes in the
  model's multiple, steps, CFG, ``numberResults``, ``seed`` from 1, output options, ``strength``, LoRAs,
  input images) and answered per ``deliveryMethod``: ``sync`` (the server's default) with the images
  themselves, ``async`` with an acknowledgement, after which ``getResponse`` reports each generation as
  ``processing``, ``success`` or ``error``. Image ``i`` of a task is made with ``seed + i`` (Runware does not
  document how a batch derives its seeds). A ``taskUUID`` sent twice is a ``conflictTaskUUID`` error.
* Images are photo-like (smooth colour fields plus grain; flat colour on request), deterministic per
  (size, seed), encoded as ``outputFormat`` and returned as ``outputType`` says: ``imageBase64Data``,
  ``imageDataURI`` or ``imageURL`` (served by this server under ``/images/``).
* ``seedImage``, ``maskImage`` and ``referenceImages`` (top level or under ``inputs``) may be a data URI,
  bare base64, the UUID of an uploaded or generated image, or a URL; they are decoded and recorded
  (:class:`ReceivedImage`). ``imageUpload`` and ``mediaStorage`` store an image and answer its UUID and
  URL. ``modelSearch`` searches a small catalog (:data:`DEFAULT_CATALOG`).

Tests change its behaviour through plain attributes (reject the key, answer slowly, drop the connection
mid-task, fail tasks, refuse requests with an HTTP status, compression off) and read what happened:
every task (:attr:`FakeRunwareAPI.tasks`, with what became of it), connections, requests, polls,
downloads, and the most tasks and downloads in flight at once. It runs its own event loop in a thread, so
a slow test loop never delays its answers.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import json
import random
import re
import socket
import threading
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from http import HTTPStatus
from types import TracebackType
from typing import Any, Literal

from aiohttp import WSMsgType, web
from PIL import Image, UnidentifiedImageError

DEFAULT_KEY = "dummy-key-123"
COST_PER_IMAGE = 0.0038
DOCS = "https://runware.ai/docs/en/image-inference/api-reference"
#: What Runware answers for a ``model`` that is not an AIR id it serves.
UNKNOWN_MODEL_MESSAGE = (
    "Invalid value for 'model' parameter. Model must be an string value representing a valid AIR identifier."
)

DropMode = Literal["abort", "close"]
ImageStyle = Literal["photo", "flat"]
Transport = Literal["websocket", "rest"]
TaskStatus = Literal["processing", "success", "error"]
Frame = dict[str, list[dict[str, Any]]]
#: ``(width, height, seed, outputFormat) -> encoded image``: what :attr:`FakeRunwareAPI.image_source` takes.
ImageSource = Callable[[int, int, int, str], bytes]
#: Runware's seeds: 1 up to a signed 64-bit integer.
MAX_SEED = 2**63 - 1

OUTPUT_TYPES = ("URL", "base64Data", "dataURI")
#: ``outputFormat`` -> (Pillow format, MIME type).
OUTPUT_FORMATS = {"PNG": ("PNG", "image/png"), "JPG": ("JPEG", "image/jpeg"), "WEBP": ("WEBP", "image/webp")}
INPUT_IMAGE_FORMATS = {"PNG", "JPEG", "WEBP"}
IMAGE_FIELDS = ("seedImage", "maskImage", "referenceImages")
UUID_PATTERN = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE)
DATA_URI_PATTERN = re.compile(r"^data:(?P<type>[\w.+/-]+);base64,(?P<data>.*)$", re.DOTALL)


# -- the catalog ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CatalogModel:
    """One model the fake serves, and how ``modelSearch`` describes it."""

    air: str
    name: str
    architecture: str
    category: str = "checkpoint"
    version: str = "1.0"
    tags: tuple[str, ...] = ()
    type: str | None = "base"
    #: Width and height must be multiples of this (Kontext models take multiples of 16).
    size_multiple: int = 64
    default_size: int = 1024
    default_steps: int = 20
    default_cfg: float = 7.0
    trigger_words: str = ""

    def matches(self, search: str, filters: dict[str, Any]) -> bool:
        if search and not any(search in text.lower() for text in (self.name, self.air, self.version, *self.tags)):
            return False
        return all(value is None or getattr(self, name) == value for name, value in filters.items())

    def search_result(self) -> dict[str, Any]:
        """The model as a ``modelSearch`` result; defaults are only given for checkpoints."""
        result: dict[str, Any] = {
            "name": self.name,
            "air": self.air,
            "tags": list(self.tags),
            "heroImage": f"https://im.runware.ai/models/{self.air.replace(':', '-')}.jpg",
            "category": self.category,
            "private": False,
            "comment": "",
            "version": self.version,
            "architecture": self.architecture,
        }
        if self.category == "checkpoint":
            result |= {
                "type": self.type,
                "defaultWidth": self.default_size,
                "defaultHeight": self.default_size,
                "defaultSteps": self.default_steps,
                "defaultScheduler": "Default",
                "defaultCFG": self.default_cfg,
            }
        else:
            result["positiveTriggerWords"] = self.trigger_words
        return result


DEFAULT_CATALOG: tuple[CatalogModel, ...] = (
    CatalogModel("rundiffusion:130@100", "Juggernaut Pro FLUX", "flux1d", tags=("photorealistic", "flux")),
    CatalogModel("rundiffusion:110@101", "Juggernaut Lightning Flux", "flux1d", tags=("photorealistic", "fast")),
    CatalogModel("runware:100@1", "FLUX.1 [schnell]", "flux1s", tags=("flux", "fast"), default_steps=4),
    CatalogModel("runware:101@1", "FLUX.1 [dev]", "flux1d", tags=("flux",), default_steps=28),
    CatalogModel("runware:97@3", "HiDream-I1 Fast", "hidreamfast", tags=("illustration",), default_steps=16),
    CatalogModel("runware:106@1", "FLUX.1 Kontext [dev]", "fluxkontextdev", tags=("edit", "flux"), size_multiple=16),
    CatalogModel("bfl:3@1", "FLUX.1 Kontext [pro]", "fluxkontextpro", tags=("edit", "flux"), size_multiple=16),
    CatalogModel("civitai:133005@782002", "Juggernaut XL", "sdxl", version="Ragnarok", tags=("photorealistic",)),
    CatalogModel(
        "civitai:58390@62833",
        "Detail Tweaker",
        "sd1x",
        category="lora",
        version="v1.0",
        tags=("detail", "style"),
        type=None,
        trigger_words="",
    ),
    CatalogModel(
        "civitai:180891@838667",
        "Anime Lineart",
        "flux1d",
        category="lora",
        tags=("anime", "lineart", "style"),
        type=None,
        trigger_words="lineart",
    ),
)


# -- records ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReceivedImage:
    """An input image as the fake received it."""

    #: Where it came in: ``seedImage``, ``inputs.referenceImages[1]``, ``image`` (upload), ...
    field: str
    source: Literal["dataURI", "base64", "uuid", "url"]
    #: The decoded bytes; ``None`` for a URL this server does not serve (it never fetches the internet).
    data: bytes | None = None
    #: The media type a data URI declared.
    media_type: str | None = None
    #: What Pillow recognised: ``PNG``, ``JPEG`` or ``WEBP``.
    format: str | None = None
    dimensions: tuple[int, int] | None = None

    @property
    def nbytes(self) -> int | None:
        return None if self.data is None else len(self.data)


@dataclass
class FakeTask:
    """One ``imageInference`` task the fake accepted, and what became of it."""

    task: dict[str, Any]
    transport: Transport
    images: list[ReceivedImage]
    status: TaskStatus = "processing"
    results: list[dict[str, Any]] = field(default_factory=list)
    error: dict[str, Any] | None = None
    #: Its outcome reached an open connection (pushed, in a REST response, or returned by ``getResponse``).
    #: The SDK cancels on the client side only: over a WebSocket a ``sync`` result is still pushed to the
    #: open socket, so only an ``async`` or REST task shows a cancellation, as an outcome never delivered.
    delivered: bool = False
    finished: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    @property
    def uuid(self) -> str:
        return str(self.task["taskUUID"])

    @property
    def asynchronous(self) -> bool:
        return self.task.get("deliveryMethod") == "async"

    def outcome(self) -> Frame:
        """The task's answer as the API frames it once the task has finished."""
        if self.error is not None:
            return {"data": [], "errors": [self.error]}
        return {"data": self.results}


class TaskRejected(Exception):
    """A task the API answers with an error object."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error["message"])
        self.error = error


# -- wire helpers ----------------------------------------------------------------------------------------


def runware_error(
    code: str, message: str, task: dict[str, Any] | None = None, parameter: str | None = None, **extra: Any
) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message, **extra}
    if parameter is not None:
        error["parameter"] = parameter
        error["documentation"] = f"{DOCS}#request-{parameter.lower().replace('.', '-')}"
    if task is not None:
        error["taskType"] = task.get("taskType")
        error["taskUUID"] = task.get("taskUUID")
    return error


def invalid_api_key() -> dict[str, Any]:
    return {
        "code": "invalidApiKey",
        "message": "Invalid API key. Get one at https://my.runware.ai/signup",
        "parameter": "apiKey",
        "type": "string",
        "taskType": "authentication",
    }


def http_status_for(code: str) -> int:
    """The HTTP status the REST endpoint answers an error code with."""
    if "ApiKey" in code:
        return 401
    if "Credits" in code:
        return 402
    if "RateLimit" in code or code == "rateLimitExceeded":
        return 429
    if code.endswith("NotFound"):
        return 404
    if code.startswith(("invalid", "missing", "unsupported", "conflict")):
        return 400
    if code == "serviceUnavailable":
        return 503
    return 500


def _check_mask(images: list[ReceivedImage], task: dict[str, Any]) -> None:
    """Runware's checks of a ``maskImage``: it needs a ``seedImage`` of its size, and it is a mask (greyscale)."""
    by_field = {image.field: image for image in images}
    mask, seed = by_field.get("maskImage"), by_field.get("seedImage")
    if mask is None:
        return
    if seed is None:
        raise TaskRejected(runware_error("missingSeedImage", "A maskImage needs a seedImage.", task, "seedImage"))
    assert mask.data is not None
    decoded = Image.open(io.BytesIO(mask.data))
    rgb = decoded.convert("RGB")
    grey = decoded.mode in ("1", "L", "LA", "I", "I;16") or rgb.tobytes() == rgb.convert("L").convert("RGB").tobytes()
    if not grey:
        message = "Invalid value for 'maskImage' parameter. The mask must be a black and white image."
        raise TaskRejected(runware_error("invalidMaskImage", message, task, "maskImage"))
    if mask.dimensions != seed.dimensions:
        message = "Invalid value for 'maskImage' parameter. The mask must have the size of the seedImage."
        raise TaskRejected(runware_error("invalidMaskImage", message, task, "maskImage"))


def _inpainted(data: bytes, inputs: list[ReceivedImage], output_format: str) -> bytes:
    """With a seed image and a mask, what inpainting returns: the new pixels where the mask is white, the seed
    image's elsewhere (the seed image's size); else ``data`` as it is."""
    by_field = {image.field: image for image in inputs}
    seed, mask = by_field.get("seedImage"), by_field.get("maskImage")
    if seed is None or mask is None or seed.data is None or mask.data is None:
        return data
    base = Image.open(io.BytesIO(seed.data)).convert("RGB")
    made = Image.open(io.BytesIO(data)).convert("RGB").resize(base.size)
    where = Image.open(io.BytesIO(mask.data)).convert("L").resize(base.size)
    buffer = io.BytesIO()
    Image.composite(made, base, where).save(buffer, format=OUTPUT_FORMATS[output_format][0])
    return buffer.getvalue()


def render_image(width: int, height: int, seed: int, style: ImageStyle, output_format: str) -> bytes:
    """A deterministic image for (size, seed): smooth colour fields with grain, or one flat colour."""
    rng = random.Random(seed)
    if style == "flat":
        image = Image.new("RGB", (width, height), (seed % 251, (seed // 251) % 241, 90))
    else:
        cells = (max(2, width // 48), max(2, height // 48))
        coarse = Image.frombytes("RGB", cells, rng.randbytes(cells[0] * cells[1] * 3))
        grain = Image.frombytes("L", (width, height), rng.randbytes(width * height)).convert("RGB")
        image = Image.blend(coarse.resize((width, height), Image.Resampling.BICUBIC), grain, 0.1)
    buffer = io.BytesIO()
    pillow_format = OUTPUT_FORMATS[output_format][0]
    options: dict[str, Any] = {"compress_level": 1} if pillow_format == "PNG" else {"quality": 90}
    image.save(buffer, format=pillow_format, **options)
    return buffer.getvalue()


def _inspect(data: bytes) -> tuple[str, tuple[int, int]] | None:
    try:
        with Image.open(io.BytesIO(data)) as image:
            return str(image.format), image.size
    except (UnidentifiedImageError, OSError):
        return None


def _in_range(value: Any, low: float, high: float, integer: bool = False) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return (not integer or isinstance(value, int)) and low <= value <= high


# -- connections -----------------------------------------------------------------------------------------


@dataclass(eq=False)
class _Socket:
    """One accepted WebSocket; sends are serialised, and a closed socket just refuses them."""

    ws: web.WebSocketResponse
    transport: asyncio.Transport | None
    session: str | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def send(self, frame: Frame) -> bool:
        if self.ws.closed:
            return False
        try:
            async with self.lock:
                await self.ws.send_str(json.dumps(frame))
        except (ConnectionError, RuntimeError):
            return False
        return True


@dataclass
class _Media:
    data: bytes
    media_type: str


# -- the server ------------------------------------------------------------------------------------------


@dataclass
class FakeRunwareAPI:
    api_key: str = DEFAULT_KEY
    catalog: tuple[CatalogModel, ...] = DEFAULT_CATALOG

    # -- behaviour: tests may change these at any time --------------------------------------------------
    #: Answer every authentication (WebSocket task or REST key) with ``invalidApiKey``.
    reject_key: bool = False
    #: Never answer a WebSocket authentication (the client has to time out).
    answer_auth: bool = True
    #: Refuse every request with this HTTP status: the WebSocket handshake and every REST call.
    refuse_status: int | None = None
    #: Seconds each ``imageInference`` task takes.
    delay_s: float = 0.0
    #: Drop the connection instead of answering each of the next ``drop_next`` ``imageInference`` tasks. The
    #: task was accepted and goes on running, as on Runware: sent again it is a ``conflictTaskUUID``, and
    #: an ``async`` one can still be collected with ``getResponse``.
    drop_next: int = 0
    #: ``abort``: the TCP connection just ends; ``close``: a clean WebSocket close (code 1000).
    drop_mode: DropMode = "abort"
    #: Fail every ``imageInference`` task with this error object when it finishes (taskType/taskUUID added).
    task_error: dict[str, Any] | None = None
    #: Make images with seeds from this value on, whatever the task asked (as models that ignore it do).
    seed_override: int | None = None
    #: Report ``NSFWContent: true`` for tasks that ask for ``safety.checkContent``.
    flag_nsfw: bool = False
    #: Accept permessage-deflate on the WebSocket (Runware does); benchmarks compare without it.
    compression: bool = True
    image_style: ImageStyle = "photo"
    #: Make the encoded images with this instead of drawing them (benchmarks pass one that returns a cached image).
    image_source: ImageSource | None = None
    #: Seconds each image download takes (to show downloads running in parallel).
    download_delay_s: float = 0.0
    #: Send each image at this many bytes per second, in parts of up to 64 KiB each sent when the link would
    #: have carried it, as a real network link does (None: all at once).
    download_bytes_per_s: float | None = None
    #: Answer every image download with this HTTP status instead (e.g. 404, a link that expired).
    download_status: int | None = None

    # -- what happened --------------------------------------------------------------------------------
    #: Every ``imageInference`` task received (valid or not), in order.
    requests: list[dict[str, Any]] = field(default_factory=list)
    #: Every accepted ``imageInference`` task by ``taskUUID``.
    tasks: dict[str, FakeTask] = field(default_factory=dict)
    #: Every WebSocket ``authentication`` task received.
    auth_requests: list[dict[str, Any]] = field(default_factory=list)
    #: Every image stored by ``imageUpload`` / ``mediaStorage``, and every ``modelSearch`` task.
    uploads: list[ReceivedImage] = field(default_factory=list)
    searches: list[dict[str, Any]] = field(default_factory=list)
    #: WebSocket connections accepted so far, and those still open; REST calls (``POST /v1``) so far.
    connections: int = 0
    open_connections: int = 0
    #: WebSocket connections that negotiated permessage-deflate.
    compressed_connections: int = 0
    http_requests: int = 0
    #: TCP connections the REST calls came over (a client that pools connections reuses them).
    http_connections: int = 0
    pings: int = 0
    #: ``getResponse`` tasks answered.
    polls: int = 0
    #: ``imageInference`` tasks being generated now, and the most at once.
    in_flight: int = 0
    max_in_flight: int = 0
    image_downloads: int = 0
    downloads_in_flight: int = 0
    max_downloads_in_flight: int = 0

    _sessions: set[str] = field(default_factory=set, init=False, repr=False)
    _media: dict[str, _Media] = field(default_factory=dict, init=False, repr=False)
    _sockets: set[_Socket] = field(default_factory=set, init=False, repr=False)
    _http_transports: set[asyncio.BaseTransport] = field(default_factory=set, init=False, repr=False)
    _jobs: set[asyncio.Task[None]] = field(default_factory=set, init=False, repr=False)
    _port: int | None = field(default=None, init=False, repr=False)
    _loop: asyncio.AbstractEventLoop | None = field(default=None, init=False, repr=False)
    _stopped: asyncio.Future[None] | None = field(default=None, init=False, repr=False)
    _thread: threading.Thread | None = field(default=None, init=False, repr=False)

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self._started_port()}/v1"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self._started_port()}/v1"

    def insufficient_credits(self) -> None:
        self.task_error = {
            "code": "insufficientCredits",
            "message": "Insufficient credits. Please top up your account balance to continue.",
        }

    def forget(self) -> None:
        """Drop every record and stored image (a long benchmark would otherwise keep every answer it sent)."""
        self.requests.clear()
        self.tasks.clear()
        self._media.clear()

    def abandoned(self) -> list[FakeTask]:
        """Tasks that finished but whose outcome never reached the client (it went away or stopped asking)."""
        return [task for task in self.tasks.values() if task.status != "processing" and not task.delivered]

    # -- lifecycle ------------------------------------------------------------------------------------

    def start(self) -> FakeRunwareAPI:
        ready = threading.Event()
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(ready),), daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the fake Runware API did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stopped is not None and not self._stopped.done():
            self._loop.call_soon_threadsafe(self._stopped.set_result, None)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> FakeRunwareAPI:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _started_port(self) -> int:
        assert self._port is not None, "start the server first"
        return self._port

    async def _serve(self, ready: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopped = self._loop.create_future()
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_get("/v1", self._websocket)
        app.router.add_post("/v1", self._rest)
        app.router.add_get("/images/{name}", self._download)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        self._port = listener.getsockname()[1]
        await web.SockSite(runner, listener).start()
        ready.set()
        try:
            await self._stopped
        finally:
            for job in list(self._jobs):
                job.cancel()
            for open_socket in list(self._sockets):
                await open_socket.ws.close()
            await runner.cleanup()

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        job = asyncio.get_running_loop().create_task(coroutine)
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)

    # -- WebSocket ------------------------------------------------------------------------------------

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        if self.refuse_status is not None:
            return self._refusal()
        ws = web.WebSocketResponse(compress=self.compression, max_msg_size=0)
        if not ws.can_prepare(request).ok:
            return web.Response(status=400, text="Expected a WebSocket upgrade.\n")
        await ws.prepare(request)
        connection = _Socket(ws, request.transport)
        self.connections += 1
        self.compressed_connections += bool(ws.compress)
        self.open_connections += 1
        self._sockets.add(connection)
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    await self._on_message(connection, message.data)
        finally:
            self._sockets.discard(connection)
            self.open_connections -= 1
        return ws

    async def _on_message(self, connection: _Socket, raw: str) -> None:
        try:
            tasks = json.loads(raw)
        except json.JSONDecodeError:
            await connection.send({"errors": [runware_error("invalidJSON", "The message is not valid JSON.")]})
            return
        for task in tasks if isinstance(tasks, list) else [tasks]:
            if not isinstance(task, dict):
                await connection.send({"errors": [runware_error("invalidTask", "Each task must be an object.")]})
            elif task.get("taskType") == "authentication":
                await self._authenticate(connection, task)
            elif connection.session is None:
                await connection.send({"errors": [runware_error("missingApiKey", "Authenticate first.", task)]})
            elif task.get("taskType") == "imageInference":
                await self._infer_over_websocket(connection, task)
            else:
                await connection.send(await self._answer(task))

    async def _authenticate(self, connection: _Socket, task: dict[str, Any]) -> None:
        self.auth_requests.append(task)
        if not self.answer_auth:
            return
        if self.reject_key or task.get("apiKey") != self.api_key:
            await connection.send({"errors": [invalid_api_key()]})
            return
        resumed = task.get("connectionSessionUUID")
        session = resumed if resumed in self._sessions else str(uuid.uuid4())
        self._sessions.add(session)
        connection.session = session
        await connection.send({"data": [{"taskType": "authentication", "connectionSessionUUID": session}]})

    async def _infer_over_websocket(self, connection: _Socket, task: dict[str, Any]) -> None:
        accepted = self._accept(task, "websocket")
        if not isinstance(accepted, FakeTask):
            await connection.send(accepted)
            return
        if self._take_drop():
            await self._drop(connection)
        elif accepted.asynchronous:
            await connection.send({"data": [{"taskType": "imageInference", "taskUUID": accepted.uuid}]})
        else:
            self._spawn(self._push_when_finished(connection, accepted))

    async def _push_when_finished(self, connection: _Socket, task: FakeTask) -> None:
        """A ``sync`` task's answer: each image as its own message, or the error."""
        await task.finished.wait()
        outcome = task.outcome()
        frames: list[Frame] = [{"data": [item]} for item in outcome["data"]] if task.error is None else [outcome]
        # Marked first: the client may act on the last message before this coroutine runs again.
        task.delivered = not connection.ws.closed
        for frame in frames:
            if not await connection.send(frame):
                task.delivered = False

    async def _drop(self, connection: _Socket) -> None:
        if self.drop_mode == "abort" and connection.transport is not None:
            connection.transport.abort()
        else:
            await connection.ws.close()

    # -- REST -----------------------------------------------------------------------------------------

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        self.http_requests += 1
        self._count_http_connection(request)
        if self.refuse_status is not None:
            return self._refusal()
        try:
            body = await request.json()
        except ValueError:
            return self._json(400, {"errors": [runware_error("invalidJSON", "The body is not valid JSON.")]})
        tasks = [task for task in (body if isinstance(body, list) else [body]) if isinstance(task, dict)]
        key = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if tasks and tasks[0].get("taskType") == "authentication":
            key = str(tasks.pop(0).get("apiKey") or "")
        if not key:
            return self._json(401, {"errors": [runware_error("missingApiKey", "Missing API key.", None, "apiKey")]})
        if self.reject_key or key != self.api_key:
            return self._json(401, {"errors": [invalid_api_key()]})
        accepted: list[FakeTask] = []
        frames = await asyncio.gather(*(self._answer_rest(task, accepted) for task in tasks))
        data = [item for frame in frames for item in frame.get("data", [])]
        errors = [error for frame in frames for error in frame.get("errors", [])]
        if self._take_drop(any(task.get("taskType") == "imageInference" for task in tasks)):
            if request.transport is not None:
                request.transport.abort()
            return web.Response()
        delivered = request.transport is not None and not request.transport.is_closing()
        for task in accepted:
            if task.status != "processing" and not task.asynchronous:
                task.delivered = delivered
        if errors:
            return self._json(http_status_for(str(errors[0].get("code"))), {"data": data, "errors": errors})
        return self._json(200, {"data": data})

    async def _answer_rest(self, task: dict[str, Any], accepted: list[FakeTask]) -> Frame:
        if task.get("taskType") != "imageInference":
            return await self._answer(task)
        outcome = self._accept(task, "rest")
        if not isinstance(outcome, FakeTask):
            return outcome
        accepted.append(outcome)
        if outcome.asynchronous:
            return {"data": [{"taskType": "imageInference", "taskUUID": outcome.uuid}]}
        await outcome.finished.wait()
        return outcome.outcome()

    def _count_http_connection(self, request: web.Request) -> None:
        if request.transport is not None and request.transport not in self._http_transports:
            self._http_transports.add(request.transport)
            self.http_connections += 1

    def _refusal(self) -> web.Response:
        assert self.refuse_status is not None
        status = HTTPStatus(self.refuse_status)
        return web.Response(status=status.value, text=f"{status.phrase}\n")

    @staticmethod
    def _json(status: int, frame: Frame) -> web.Response:
        return web.json_response(frame, status=status)

    def _take_drop(self, applies: bool = True) -> bool:
        if applies and self.drop_next > 0:
            self.drop_next -= 1
            return True
        return False

    # -- image downloads ------------------------------------------------------------------------------

    async def _download(self, request: web.Request) -> web.StreamResponse:
        media = self._media.get(request.match_info["name"].rsplit(".", 1)[0])
        if self.download_status is not None:
            return web.Response(status=self.download_status, text=f"{HTTPStatus(self.download_status).phrase}\n")
        if media is None:
            return web.Response(status=404, text="Not Found\n")
        self.image_downloads += 1
        self.downloads_in_flight += 1
        self.max_downloads_in_flight = max(self.max_downloads_in_flight, self.downloads_in_flight)
        try:
            await asyncio.sleep(self.download_delay_s)
            if self.download_bytes_per_s is None:
                return web.Response(body=media.data, content_type=media.media_type)
            return await self._paced(request, media, self.download_bytes_per_s)
        finally:
            self.downloads_in_flight -= 1

    @staticmethod
    async def _paced(request: web.Request, media: _Media, bytes_per_s: float) -> web.StreamResponse:
        part = 64 * 1024
        response = web.StreamResponse(headers={"Content-Type": media.media_type})
        response.content_length = len(media.data)
        await response.prepare(request)
        loop = asyncio.get_running_loop()
        started = loop.time()
        for offset in range(0, len(media.data), part):
            chunk = media.data[offset : offset + part]
            await asyncio.sleep(max(0.0, started + (offset + len(chunk)) / bytes_per_s - loop.time()))
            await response.write(chunk)
        await response.write_eof()
        return response

    def _media_url(self, media_uuid: str) -> str:
        extension = self._media[media_uuid].media_type.rsplit("/", 1)[-1].replace("jpeg", "jpg")
        return f"http://127.0.0.1:{self._started_port()}/images/{media_uuid}.{extension}"

    # -- tasks other than inference ---------------------------------------------------------------------

    async def _answer(self, task: dict[str, Any]) -> Frame:
        kind = task.get("taskType")
        try:
            if kind == "ping":
                self.pings += 1
                return {"data": [{"taskType": "ping", "pong": True}]}
            if kind == "getResponse":
                return self._poll(task)
            if kind in ("imageUpload", "mediaStorage"):
                return self._upload(task)
            if kind == "modelSearch":
                return self._search(task)
        except TaskRejected as rejected:
            return {"errors": [rejected.error]}
        return {"errors": [runware_error("unsupportedTaskType", f"Unknown taskType {kind!r}.", task, "taskType")]}

    def _poll(self, task: dict[str, Any]) -> Frame:
        self.polls += 1
        found = self.tasks.get(str(task.get("taskUUID")))
        if found is None:
            raise TaskRejected(runware_error("taskFailedOrNotFound", "No task with this taskUUID.", task))
        if found.status == "processing":
            pending = {"taskType": "imageInference", "taskUUID": found.uuid, "status": "processing"}
            return {"data": [pending for _ in range(found.task.get("numberResults") or 1)]}
        found.delivered = True
        if found.error is not None:
            return {"data": [], "errors": [{**found.error, "status": "error"}]}
        return {"data": [{**item, "status": "success"} for item in found.results]}

    def _upload(self, task: dict[str, Any]) -> Frame:
        kind = str(task["taskType"])
        name = "media" if kind == "mediaStorage" else "image"
        if kind == "mediaStorage" and task.get("operation") != "upload":
            raise TaskRejected(runware_error("invalidOperation", "Only 'upload' is supported.", task, "operation"))
        received = self._resolve_image(name, task.get(name), task)
        if received.data is None or received.format is None:
            raise TaskRejected(runware_error(f"invalid{name.title()}", "The image could not be read.", task, name))
        self.uploads.append(received)
        media_uuid = self._store(received.data, Image.MIME[received.format])
        prefix = "media" if kind == "mediaStorage" else "image"
        result = {"taskType": kind, "taskUUID": task.get("taskUUID"), f"{prefix}UUID": media_uuid}
        result[f"{prefix}URL"] = self._media_url(media_uuid)
        if kind == "mediaStorage":
            result["operation"] = "upload"
        return {"data": [result]}

    def _search(self, task: dict[str, Any]) -> Frame:
        self.searches.append(task)
        limit, offset = task.get("limit", 20), task.get("offset", 0)
        if not _in_range(limit, 1, 100, integer=True):
            raise TaskRejected(runware_error("invalidLimit", "Limit must be between 1 and 100.", task, "limit"))
        if not _in_range(offset, 0, 1_000_000, integer=True):
            raise TaskRejected(runware_error("invalidOffset", "Offset must be 0 or more.", task, "offset"))
        search = str(task.get("search") or "").lower()
        filters = {name: task.get(name) for name in ("category", "architecture", "type")}
        found = [model for model in self.catalog if model.matches(search, filters)]
        result = {
            "taskType": "modelSearch",
            "taskUUID": task.get("taskUUID"),
            "results": [model.search_result() for model in found[offset : offset + limit]],
            "totalResults": len(found),
        }
        return {"data": [result]}

    # -- inference ------------------------------------------------------------------------------------

    def _accept(self, task: dict[str, Any], transport: Transport) -> FakeTask | Frame:
        """Validate and start an ``imageInference`` task; the error frame when it is refused."""
        self.requests.append(task)
        if str(task.get("taskUUID")) in self.tasks:
            return {"errors": [runware_error("conflictTaskUUID", "A task with this taskUUID already exists.", task)]}
        try:
            self._check_inference(task)
            images = self._input_images(task)
            _check_mask(images, task)
        except TaskRejected as rejected:
            return {"errors": [rejected.error]}
        accepted = FakeTask(task, transport, images)
        self.tasks[accepted.uuid] = accepted
        self._spawn(self._generate(accepted))
        return accepted

    async def _generate(self, task: FakeTask) -> None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay_s)
            if self.task_error is not None:
                task.error = {**self.task_error, "taskType": "imageInference", "taskUUID": task.uuid}
                task.status = "error"
            else:
                task.results = [
                    await self._image(task.task, index, task.images) for index in range(self._count(task.task))
                ]
                task.status = "success"
        finally:
            self.in_flight -= 1
            task.finished.set()

    @staticmethod
    def _count(task: dict[str, Any]) -> int:
        return int(task.get("numberResults") or 1)

    def _model(self, air: Any) -> CatalogModel | None:
        return next((model for model in self.catalog if model.air == air), None)

    async def _image(self, task: dict[str, Any], index: int, inputs: list[ReceivedImage]) -> dict[str, Any]:
        first_seed = task.get("seed") if self.seed_override is None else self.seed_override
        seed = first_seed + index if isinstance(first_seed, int) else random.randrange(2**31)
        model = self._model(task["model"])
        assert model is not None
        width, height = task.get("width") or model.default_size, task.get("height") or model.default_size
        output_format = str(task.get("outputFormat") or "JPG").upper()
        if self.image_source is not None:
            data = self.image_source(width, height, seed, output_format)
        else:
            data = await asyncio.to_thread(render_image, width, height, seed, self.image_style, output_format)
            data = await asyncio.to_thread(_inpainted, data, inputs, output_format)
        media_type = OUTPUT_FORMATS[output_format][1]
        image_uuid = self._store(data, media_type)
        result: dict[str, Any] = {
            "taskType": "imageInference",
            "taskUUID": task["taskUUID"],
            "imageUUID": image_uuid,
            "seed": seed,
        }
        output = task.get("outputType") or "URL"
        if output == "URL":
            result["imageURL"] = self._media_url(image_uuid)
        elif output == "base64Data":
            result["imageBase64Data"] = base64.b64encode(data).decode("ascii")
        else:
            result["imageDataURI"] = f"data:{media_type};base64,{base64.b64encode(data).decode('ascii')}"
        if isinstance(task.get("safety"), dict) and task["safety"].get("checkContent"):
            result["NSFWContent"] = self.flag_nsfw
        if task.get("includeCost"):
            result["cost"] = COST_PER_IMAGE
        return result

    def _store(self, data: bytes, media_type: str) -> str:
        media_uuid = str(uuid.uuid4())
        self._media[media_uuid] = _Media(data, media_type)
        return media_uuid

    def _check_inference(self, task: dict[str, Any]) -> None:
        """Raise the error Runware answers for an invalid ``imageInference`` task."""
        model = self._model(task.get("model"))
        if model is None or model.category != "checkpoint":
            raise TaskRejected(runware_error("invalidModel", UNKNOWN_MODEL_MESSAGE, task, "model", type="string"))
        prompt = task.get("positivePrompt")
        if not isinstance(prompt, str) or not 2 <= len(prompt) <= 3000:
            message = (
                "Invalid value for 'positivePrompt' parameter. The prompt must have between 2 and 3000 characters."
            )
            raise TaskRejected(runware_error("invalidPositivePrompt", message, task, "positivePrompt"))
        for name in ("width", "height"):
            self._check_dimension(task, name, model.size_multiple)
        checks: list[tuple[str, float, float, bool]] = [
            ("steps", 1, 100, True),
            ("CFGScale", 0, 50, False),
            ("numberResults", 1, 20, True),
            ("seed", 1, MAX_SEED, True),
            ("strength", 0, 1, False),
        ]
        for name, low, high, integer in checks:
            value = task.get(name)
            if value is not None and not _in_range(value, low, high, integer):
                message = f"Invalid value for '{name}' parameter. It must be between {low:g} and {high:g}."
                raise TaskRejected(runware_error(f"invalid{name[0].upper()}{name[1:]}", message, task, name))
        self._check_output(task)
        self._check_loras(task)

    @staticmethod
    def _check_dimension(task: dict[str, Any], name: str, multiple: int) -> None:
        value = task.get(name)
        if value is None or (_in_range(value, 128, 2048, integer=True) and value % multiple == 0):
            return
        message = (
            f"Invalid value for '{name}' parameter. Image {name} must be an integer value between 128 and 2048, "
            f"in multiples of '{multiple}'."
        )
        error = runware_error(f"invalid{name.title()}", message, task, name, type="integer")
        raise TaskRejected(error | {"min": 128, "max": 2048, "multiplier": multiple})

    @staticmethod
    def _check_output(task: dict[str, Any]) -> None:
        output_type = task.get("outputType")
        if output_type is not None and output_type not in OUTPUT_TYPES:
            message = f"Invalid value for 'outputType' parameter. Use one of {', '.join(OUTPUT_TYPES)}."
            raise TaskRejected(runware_error("invalidOutputType", message, task, "outputType"))
        output_format = task.get("outputFormat")
        if output_format is not None and str(output_format).upper() not in OUTPUT_FORMATS:
            message = f"Invalid value for 'outputFormat' parameter. Use one of {', '.join(OUTPUT_FORMATS)}."
            raise TaskRejected(runware_error("invalidOutputFormat", message, task, "outputFormat"))

    def _check_loras(self, task: dict[str, Any]) -> None:
        loras = task.get("lora")
        if loras is None:
            return
        for index, lora in enumerate(loras if isinstance(loras, list) else [loras]):
            model = self._model(lora.get("model")) if isinstance(lora, dict) else None
            weight = lora.get("weight", 1) if isinstance(lora, dict) else None
            if model is None or model.category != "lora" or not _in_range(weight, -4, 4):
                message = f"Invalid value for 'lora[{index}]': use the AIR id of a LoRA and a weight from -4 to 4."
                raise TaskRejected(runware_error("invalidLora", message, task, "lora"))

    # -- input images ---------------------------------------------------------------------------------

    def _input_images(self, task: dict[str, Any]) -> list[ReceivedImage]:
        """Decode every input image of a task, top level and under ``inputs``."""
        received: list[ReceivedImage] = []
        inputs = task.get("inputs")
        for prefix, container in (("", task), ("inputs.", inputs if isinstance(inputs, dict) else {})):
            for name in IMAGE_FIELDS:
                value = container.get(name)
                if value is None:
                    continue
                if name == "referenceImages":
                    if not isinstance(value, list) or not value:
                        message = f"Invalid value for '{prefix}{name}' parameter. It must be a list of images."
                        raise TaskRejected(runware_error("invalidReferenceImages", message, task, prefix + name))
                    received += [
                        self._resolve_image(f"{prefix}{name}[{i}]", item, task) for i, item in enumerate(value)
                    ]
                else:
                    received.append(self._resolve_image(prefix + name, value, task))
        return received

    def _resolve_image(self, where: str, value: Any, task: dict[str, Any]) -> ReceivedImage:
        """What an image reference points at; the error Runware answers when it points at nothing usable."""
        base = where.rsplit(".", 1)[-1].split("[", 1)[0]

        def rejected(reason: str) -> TaskRejected:
            message = f"Invalid value for '{where}' parameter. {reason}"
            return TaskRejected(runware_error(f"invalid{base[0].upper()}{base[1:]}", message, task, where))

        if not isinstance(value, str) or not value:
            raise rejected("It must be a UUID, a data URI, base64 data or a URL.")
        own = f"http://127.0.0.1:{self._started_port()}/images/"
        if UUID_PATTERN.match(value) or value.startswith(own):
            media = self._media.get(value.removeprefix(own).rsplit(".", 1)[0])
            if media is None:
                raise rejected("No image with this UUID.")
            source: Literal["dataURI", "base64", "uuid", "url"] = "uuid" if UUID_PATTERN.match(value) else "url"
            data, media_type = media.data, None
        elif value.startswith(("http://", "https://")):
            return ReceivedImage(where, "url")
        else:
            match = DATA_URI_PATTERN.match(value)
            source, media_type = ("dataURI", match["type"]) if match else ("base64", None)
            try:
                data = base64.b64decode(match["data"] if match else value, validate=True)
            except (binascii.Error, ValueError):
                raise rejected("The base64 data could not be decoded.") from None
        inspected = _inspect(data)
        if inspected is None or inspected[0] not in INPUT_IMAGE_FORMATS:
            raise rejected("Supported formats are PNG, JPG and WEBP.")
        return ReceivedImage(where, source, data, media_type, inspected[0], inspected[1])
