"""A loopback Runware API for tests: the real ``runware`` SDK talks to it over a WebSocket.

It speaks the JSON task protocol as Runware documents it. Every client message is a JSON array of task
objects; every answer is an object with a ``data`` array of results or an ``errors`` array of error objects
(``code``, ``message``, ``parameter``, ``taskType``, ``taskUUID``, ``documentation``). The first task on a
connection must be ``authentication`` with the ``apiKey``; the answer carries a ``connectionSessionUUID``
(a known one sent back by the client resumes its session). ``ping`` is answered with ``pong``.
``imageInference`` is validated the way the API does (prompt length, sizes in multiples of 64, steps, CFG,
``numberResults``) and answered with one message per image: a solid-colour PNG of the requested size as
``imageBase64Data`` (or ``imageDataURI`` / ``imageURL``, per ``outputType``), its ``seed`` (the task's
seed plus the image's index, else random) and, with ``includeCost``, its ``cost``.

Tests change its behaviour through plain attributes (reject the key, answer slowly, drop the connection
when a task arrives, answer tasks with an error, report insufficient credits, refuse the handshake with an
HTTP status) and read what it received (:attr:`requests`, :attr:`auth_requests`) and how it was used
(:attr:`connections`, :attr:`open_connections`, :attr:`max_in_flight`). It runs its own event loop in a
background thread, so a slow test loop never delays its answers and a server in a subprocess can use it.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import random
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from types import TracebackType
from typing import Any, Literal

from PIL import Image
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

DEFAULT_KEY = "dummy-key-123"
COST_PER_IMAGE = 0.0038
DOCS = "https://runware.ai/docs/en/image-inference/api-reference"

DropMode = Literal["abort", "close"]


def runware_error(
    code: str, message: str, task: dict[str, Any] | None = None, parameter: str | None = None
) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if parameter is not None:
        error["parameter"] = parameter
        error["documentation"] = f"{DOCS}#request-{parameter.lower()}"
    if task is not None:
        error["taskType"] = task.get("taskType")
        error["taskUUID"] = task.get("taskUUID")
    return error


def invalid_api_key() -> dict[str, Any]:
    return {
        "code": "invalidApiKey",
        "message": "Invalid API key. Get one at https://my.runware.ai/signup",
        "parameter": "apiKey",
        "taskType": "authentication",
    }


def solid_png(width: int, height: int, seed: int) -> bytes:
    color = (seed % 251, (seed // 251) % 241, 90)
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _check_inference(task: dict[str, Any]) -> dict[str, Any] | None:
    """The error Runware answers for an invalid ``imageInference`` task, or ``None``."""
    prompt = task.get("positivePrompt")
    if not isinstance(prompt, str) or not 2 <= len(prompt) <= 3000:
        return runware_error(
            "invalidPositivePrompt",
            "Invalid value for 'positivePrompt' parameter. The prompt must have between 2 and 3000 characters.",
            task,
            "positivePrompt",
        )
    for name in ("width", "height"):
        value = task.get(name)
        if not isinstance(value, int) or value % 64 or not 128 <= value <= 2048:
            return runware_error(
                f"invalid{name.title()}",
                f"Invalid value for '{name}' parameter. It must be a multiple of 64 between 128 and 2048.",
                task,
                name,
            )
    checks: list[tuple[str, str, float, float]] = [
        ("steps", "invalidSteps", 1, 100),
        ("CFGScale", "invalidCFGScale", 0, 50),
        ("numberResults", "invalidNumberResults", 1, 20),
    ]
    for name, code, low, high in checks:
        value = task.get(name)
        if value is not None and not (isinstance(value, int | float) and low <= value <= high):
            return runware_error(
                code, f"Invalid value for '{name}' parameter. It must be between {low:g} and {high:g}.", task, name
            )
    if not isinstance(task.get("model"), str) or "@" not in task["model"]:
        return runware_error("invalidModel", "Invalid value for 'model' parameter. Use an AIR id.", task, "model")
    return None


@dataclass
class FakeRunwareServer:
    api_key: str = DEFAULT_KEY

    # -- behaviour: tests may change these at any time --------------------------------------------------
    #: Answer every authentication with ``invalidApiKey``.
    reject_key: bool = False
    #: Never answer authentication (the client has to time out).
    answer_auth: bool = True
    #: Refuse the WebSocket handshake with this HTTP status (e.g. 503).
    handshake_status: int | None = None
    #: Seconds to wait before answering an ``imageInference`` task.
    delay_s: float = 0.0
    #: Drop the connection when each of the next ``drop_next`` ``imageInference`` tasks arrives.
    drop_next: int = 0
    #: ``abort``: the TCP connection just ends (no close frame); ``close``: a clean close (code 1000).
    drop_mode: DropMode = "abort"
    #: Answer every ``imageInference`` task with this error object (its taskType/taskUUID are filled in).
    task_error: dict[str, Any] | None = None
    #: Make images with seeds from this value on, whatever the task asked (as models that ignore it do).
    seed_override: int | None = None
    #: Offer permessage-deflate (as websockets servers do by default); benchmarks compare without it.
    compression: bool = True
    #: Draws the PNG for (width, height, seed); benchmarks swap in photo-like images.
    png_factory: Callable[[int, int, int], bytes] = solid_png

    # -- what happened --------------------------------------------------------------------------------
    #: Every ``imageInference`` task received, in order.
    requests: list[dict[str, Any]] = field(default_factory=list)
    #: Every ``authentication`` task received, in order.
    auth_requests: list[dict[str, Any]] = field(default_factory=list)
    #: WebSocket connections accepted so far, and those still open.
    connections: int = 0
    open_connections: int = 0
    pings: int = 0
    #: ``imageInference`` tasks in progress now, and the most at once, across all connections.
    in_flight: int = 0
    max_in_flight: int = 0
    _sessions: set[str] = field(default_factory=set, init=False, repr=False)
    _port: int | None = field(default=None, init=False, repr=False)
    _loop: asyncio.AbstractEventLoop | None = field(default=None, init=False, repr=False)
    _stopped: asyncio.Future[None] | None = field(default=None, init=False, repr=False)
    _thread: threading.Thread | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        assert self._port is not None, "start the server first"
        return f"ws://127.0.0.1:{self._port}/v1"

    def insufficient_credits(self) -> None:
        self.task_error = {
            "code": "insufficientCredits",
            "message": "Insufficient credits. Please top up your account balance to continue.",
        }

    # -- lifecycle ------------------------------------------------------------------------------------

    def start(self) -> FakeRunwareServer:
        ready = threading.Event()
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(ready),), daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the fake Runware server did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set_result, None)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> FakeRunwareServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def _serve(self, ready: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopped = self._loop.create_future()
        async with serve(
            self._handle,
            "127.0.0.1",
            0,
            process_request=self._process_request,
            max_size=None,
            compression="deflate" if self.compression else None,
        ) as server:
            self._port = server.sockets[0].getsockname()[1]
            ready.set()
            await self._stopped

    # -- protocol -------------------------------------------------------------------------------------

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if self.handshake_status is not None:
            status = HTTPStatus(self.handshake_status)
            return connection.respond(status, f"{status.phrase}\n")
        return None

    async def _handle(self, websocket: ServerConnection) -> None:
        self.connections += 1
        self.open_connections += 1
        state: dict[str, str | None] = {"session": None}
        running: set[asyncio.Task[None]] = set()
        try:
            async for raw in websocket:
                try:
                    tasks = json.loads(raw)
                except json.JSONDecodeError:
                    await self._send(websocket, errors=[runware_error("invalidJSON", "The message is not valid JSON.")])
                    continue
                for task in tasks if isinstance(tasks, list) else [tasks]:
                    await self._dispatch(websocket, state, task, running)
        except ConnectionClosed:
            pass
        finally:
            for pending in running:
                pending.cancel()
            self.open_connections -= 1

    async def _dispatch(
        self, websocket: ServerConnection, state: dict[str, str | None], task: Any, running: set[asyncio.Task[None]]
    ) -> None:
        kind = task.get("taskType") if isinstance(task, dict) else None
        if kind == "authentication":
            await self._authenticate(websocket, state, task)
        elif state["session"] is None:
            await self._send(websocket, errors=[runware_error("missingApiKey", "Authenticate first.", task)])
        elif kind == "ping":
            self.pings += 1
            await self._send(websocket, data=[{"taskType": "ping", "pong": True}])
        elif kind == "imageInference":
            self.requests.append(task)
            if self.drop_next > 0:
                self.drop_next -= 1
                await self._drop(websocket)
                return
            job = asyncio.create_task(self._infer(websocket, task))
            running.add(job)
            job.add_done_callback(running.discard)
        else:
            await self._send(
                websocket, errors=[runware_error("unsupportedTaskType", f"Unknown taskType {kind!r}.", task)]
            )

    async def _authenticate(
        self, websocket: ServerConnection, state: dict[str, str | None], task: dict[str, Any]
    ) -> None:
        self.auth_requests.append(task)
        if not self.answer_auth:
            return
        if self.reject_key or task.get("apiKey") != self.api_key:
            await self._send(websocket, errors=[invalid_api_key()])
            return
        resumed = task.get("connectionSessionUUID")
        session = resumed if resumed in self._sessions else str(uuid.uuid4())
        self._sessions.add(session)
        state["session"] = session
        await self._send(websocket, data=[{"taskType": "authentication", "connectionSessionUUID": session}])

    async def _drop(self, websocket: ServerConnection) -> None:
        if self.drop_mode == "abort":
            websocket.transport.abort()
        else:
            await websocket.close()

    async def _infer(self, websocket: ServerConnection, task: dict[str, Any]) -> None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay_s)
            failure = _check_inference(task) or (
                {**self.task_error, "taskType": "imageInference", "taskUUID": task.get("taskUUID")}
                if self.task_error is not None
                else None
            )
            if failure is not None:
                await self._send(websocket, errors=[failure])
                return
            first_seed = task.get("seed") if self.seed_override is None else self.seed_override
            for index in range(task.get("numberResults") or 1):
                seed = first_seed + index if isinstance(first_seed, int) else random.randrange(2**31)
                await self._send(websocket, data=[self._image(task, seed)])
        except ConnectionClosed:
            pass
        finally:
            self.in_flight -= 1

    def _image(self, task: dict[str, Any], seed: int) -> dict[str, Any]:
        image_uuid = str(uuid.uuid4())
        png = self.png_factory(task["width"], task["height"], seed)
        encoded = base64.b64encode(png).decode("ascii")
        result: dict[str, Any] = {
            "taskType": "imageInference",
            "taskUUID": task["taskUUID"],
            "imageUUID": image_uuid,
            "seed": seed,
            "NSFWContent": False,
        }
        output = task.get("outputType", "URL")
        if output == "base64Data":
            result["imageBase64Data"] = encoded
        elif output == "dataURI":
            result["imageDataURI"] = f"data:image/png;base64,{encoded}"
        else:
            result["imageURL"] = f"https://im.runware.ai/image/ws/2/ii/{image_uuid}.png"
        if task.get("includeCost"):
            result["cost"] = COST_PER_IMAGE
        return result

    @staticmethod
    async def _send(
        websocket: ServerConnection,
        data: list[dict[str, Any]] | None = None,
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        await websocket.send(json.dumps({"data": data} if errors is None else {"errors": errors}))
