"""A loopback Gemini API for tests: the real ``google-genai`` client talks to it over HTTP.

It serves ``POST /v1beta/models/{model}:generateContent`` with the JSON shapes the Generative Language
API documents: candidates whose ``content.parts`` hold ``text`` and ``inlineData`` (base64 image bytes),
``finishReason``, ``promptFeedback.blockReason``, ``usageMetadata``, and errors as
``{"error": {"code", "message", "status", "details": [...]}}`` with ``google.rpc`` detail types
(``ErrorInfo``, ``RetryInfo``, ``QuotaFailure``). Like the real service, it checks the
``x-goog-api-key`` header against the keys it was given, serves only the image models Google serves today
(any other model name gets the API's ``404 NOT_FOUND``), rejects an ``imageConfig`` the model does not take
(an unknown ``imageSize`` tier, a ratio the model lacks) with ``400 INVALID_ARGUMENT``, and makes images of
the pixel size the requested ``aspectRatio`` and ``imageSize`` give (Google's size tables).

Tests tell it how to answer with :meth:`FakeGeminiServer.on` (per model and/or per prompt substring) and
read what it received from :attr:`FakeGeminiServer.requests`. It runs in a background thread, so the
same server can serve in-process tests and a server started as a subprocess.
"""

from __future__ import annotations

import base64
import io
import json
import re
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from PIL import Image

from imagegen_mcp.providers.gemini import output_size

#: The key the tests configure; the fake accepts it and rejects every other one.
GEMINI_KEY = "dummy-key-123"

ROUTE = re.compile(r"^/v1beta/models/(?P<model>[A-Za-z0-9._-]+):generateContent$")
GOOGLE_RPC = "type.googleapis.com/google.rpc."


@dataclass(frozen=True)
class ServedModel:
    """What the API accepts in ``imageConfig`` for one model."""

    image_sizes: frozenset[str]
    aspect_ratios: frozenset[str]
    #: Input images one request may carry (the image to edit and references).
    max_input_images: int = 14


_RATIOS = frozenset({"1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9"})
_EXTREME_RATIOS = frozenset({"1:4", "4:1", "1:8", "8:1"})
#: The image models the Gemini API serves, with the tiers and ratios each one takes.
SERVED_MODELS = {
    "gemini-nano-banana-2.1": ServedModel(frozenset({"1K", "2K", "4K"}), _RATIOS | _EXTREME_RATIOS),
    "gemini-3.1-flash-image": ServedModel(frozenset({"512", "1K", "2K", "4K"}), _RATIOS | _EXTREME_RATIOS),
    "gemini-3-pro-image": ServedModel(frozenset({"1K", "2K", "4K"}), _RATIOS),
}


# -- what the server can be told to answer ---------------------------------------------------------


@dataclass(frozen=True)
class ImageReply:
    """A generated image (a solid colour PNG sized by the requested aspect ratio), optionally with text."""

    text: str | None = "Here is the image you asked for."
    color: tuple[int, int, int] = (210, 90, 40)
    #: Seconds to wait before answering, to observe concurrency.
    delay_s: float = 0.0
    #: Also send a ``thought`` image first, as thinking image models do; clients must skip it.
    with_thought_image: bool = False
    #: Send these bytes as the image instead of drawing one (e.g. data that is no image at all).
    data: bytes | None = None
    #: Send this text as the image's base64 field instead (e.g. text that is not base64).
    data_text: str | None = None


@dataclass(frozen=True)
class TextReply:
    """The model answers with text and no image (e.g. ``finish_reason="NO_IMAGE"``)."""

    text: str
    finish_reason: str = "STOP"


@dataclass(frozen=True)
class PromptBlocked:
    """The prompt itself is refused: no candidates, ``promptFeedback.blockReason`` set."""

    reason: str = "PROHIBITED_CONTENT"


@dataclass(frozen=True)
class CandidateBlocked:
    """The output is withheld: a candidate without content and a safety ``finishReason`` (the Gemini API
    also sends ``finishMessage``, which google-genai does not surface for it)."""

    finish_reason: str = "IMAGE_SAFETY"
    finish_message: str | None = "Unable to show the generated image: it may violate Google's policies."


@dataclass(frozen=True)
class ErrorReply:
    """An error response in Google's JSON error format."""

    http_status: int
    status: str
    message: str
    details: tuple[dict[str, Any], ...] = ()


Reply = ImageReply | TextReply | PromptBlocked | CandidateBlocked | ErrorReply


def api_key_invalid() -> ErrorReply:
    message = "API key not valid. Please pass a valid API key."
    return ErrorReply(
        400,
        "INVALID_ARGUMENT",
        message,
        (
            {
                "@type": GOOGLE_RPC + "ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            },
            {"@type": GOOGLE_RPC + "LocalizedMessage", "locale": "en-US", "message": message},
        ),
    )


def unauthenticated() -> ErrorReply:
    return ErrorReply(
        401,
        "UNAUTHENTICATED",
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or "
        "other valid authentication credential.",
    )


def permission_denied() -> ErrorReply:
    return ErrorReply(
        403,
        "PERMISSION_DENIED",
        "Method doesn't allow unregistered callers (callers without established identity). Please use API "
        "Key or other form of API consumer identity to call this API.",
    )


def quota_exhausted(model: str = "gemini-nano-banana-2.1", retry_delay: str = "17s") -> ErrorReply:
    """429 as the free tier answers for image models, whose free quota is 0."""
    metric = "generativelanguage.googleapis.com/generate_content_free_tier_requests"
    return ErrorReply(
        429,
        "RESOURCE_EXHAUSTED",
        "You exceeded your current quota, please check your plan and billing details. For more information "
        "on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.\n"
        f"* Quota exceeded for metric: {metric}, limit: 0, model: {model}\n"
        f"Please retry in {retry_delay.removesuffix('s')}s.",
        (
            {
                "@type": GOOGLE_RPC + "QuotaFailure",
                "violations": [
                    {
                        "quotaMetric": metric,
                        "quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier",
                        "quotaDimensions": {"location": "global", "model": model},
                    }
                ],
            },
            {
                "@type": GOOGLE_RPC + "Help",
                "links": [
                    {
                        "description": "Learn more about Gemini API quotas",
                        "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
                    }
                ],
            },
            {"@type": GOOGLE_RPC + "RetryInfo", "retryDelay": retry_delay},
        ),
    )


def unavailable() -> ErrorReply:
    return ErrorReply(503, "UNAVAILABLE", "The model is overloaded. Please try again later.")


def model_not_found(model: str) -> ErrorReply:
    """The API's answer for a model name it does not serve (never existed, or shut down)."""
    return ErrorReply(
        404,
        "NOT_FOUND",
        f"models/{model} is not found for API version v1beta, or is not supported for generateContent. Call "
        "ListModels to see the list of available models and their supported methods.",
    )


def invalid_image_config(served: ServedModel, model: str, image_config: dict[str, Any]) -> ErrorReply | None:
    """400 for an ``imageConfig`` that ``model`` (served as ``served``) does not take, else ``None``."""
    size, ratio = image_config.get("imageSize"), image_config.get("aspectRatio")
    if size is not None and size not in served.image_sizes:
        supported = ", ".join(sorted(served.image_sizes))
        return ErrorReply(
            400, "INVALID_ARGUMENT", f"Unsupported image size {size!r} for {model}; use one of {supported}."
        )
    if ratio is not None and ratio not in served.aspect_ratios:
        return ErrorReply(400, "INVALID_ARGUMENT", f"Unsupported aspect ratio {ratio!r} for {model}.")
    return None


# -- the server --------------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up mid-answer (a cancelled call) is normal; anything else is reported."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _proto_bytes(text: str) -> bytes:
    """A bytes field as proto3 JSON writes it: base64, standard or URL-safe, padded or not."""
    return base64.urlsafe_b64decode(text.replace("+", "-").replace("/", "_") + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class RecordedRequest:
    model: str
    api_key: str | None
    body: dict[str, Any]

    @property
    def prompt(self) -> str:
        return "".join(part.get("text", "") for part in self.body["contents"][0]["parts"])

    @property
    def images(self) -> list[tuple[str, bytes]]:
        """The input images, in order, as (MIME type, bytes). Like the API (proto3 JSON), it takes the fields'
        camelCase and snake_case names alike."""
        blobs = [part.get("inlineData", part.get("inline_data")) for part in self.body["contents"][0]["parts"]]
        return [
            (blob.get("mimeType", blob.get("mime_type")), _proto_bytes(blob["data"]))
            for blob in blobs
            if blob is not None
        ]

    @property
    def generation_config(self) -> dict[str, Any]:
        config: dict[str, Any] = self.body.get("generationConfig", {})
        return config

    @property
    def image_config(self) -> dict[str, Any]:
        config: dict[str, Any] = self.generation_config.get("imageConfig", {})
        return config


@dataclass(frozen=True)
class _Rule:
    reply: Reply
    model: str | None
    prompt_contains: str | None

    def matches(self, model: str, prompt: str) -> bool:
        return (self.model is None or self.model == model) and (
            self.prompt_contains is None or self.prompt_contains in prompt
        )


@dataclass
class _State:
    rules: list[_Rule] = field(default_factory=list)
    requests: list[RecordedRequest] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0


class FakeGeminiServer:
    """``with FakeGeminiServer(api_keys={"k"}) as api: ... api.url ...``; answers images unless told otherwise."""

    def __init__(self, api_keys: Iterable[str] = (), served: Mapping[str, ServedModel] = SERVED_MODELS) -> None:
        """``served``: the model ids it answers (others get 404), e.g. a newer id a user configures."""
        self.api_keys = frozenset(api_keys)
        self.served = dict(served)
        self._state = _State()
        self._lock = threading.Lock()
        self._httpd = _Server(("127.0.0.1", 0), _handler_for(self))
        # A short poll interval keeps shutdown (which waits for the next poll) quick between tests.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-gemini", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def on(self, reply: Reply, *, model: str | None = None, prompt_contains: str | None = None) -> None:
        """Answer ``reply`` to requests for ``model`` whose prompt contains ``prompt_contains`` (either
        may be omitted). The rule given last wins, so a test can override a broader one."""
        with self._lock:
            self._state.rules.insert(0, _Rule(reply, model, prompt_contains))

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._state.requests)

    @property
    def max_in_flight(self) -> int:
        """The most requests that were being answered at the same time."""
        with self._lock:
            return self._state.max_in_flight

    def __enter__(self) -> FakeGeminiServer:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    # -- request handling (runs on the server's threads) ---------------------------------------------

    def _answer(self, model: str, api_key: str | None, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        request = RecordedRequest(model=model, api_key=api_key, body=body)
        with self._lock:
            self._state.requests.append(request)
            reply = next(
                (rule.reply for rule in self._state.rules if rule.matches(model, request.prompt)), ImageReply()
            )
            self._state.in_flight += 1
            self._state.max_in_flight = max(self._state.max_in_flight, self._state.in_flight)
        try:
            reply = self._refusal(model, api_key, request) or reply
            if isinstance(reply, ImageReply) and reply.delay_s:
                time.sleep(reply.delay_s)
            return _render(reply, request)
        finally:
            with self._lock:
                self._state.in_flight -= 1

    def _refusal(self, model: str, api_key: str | None, request: RecordedRequest) -> ErrorReply | None:
        """What the API answers before the model runs, in the API's order: the key, the model, the request."""
        if api_key is None:
            return permission_denied()
        if self.api_keys and api_key not in self.api_keys:
            return api_key_invalid()
        if model not in self.served:
            return model_not_found(model)
        served = self.served[model]
        if len(request.images) > served.max_input_images:
            return ErrorReply(
                400,
                "INVALID_ARGUMENT",
                f"Too many images: {len(request.images)}; {model} takes at most {served.max_input_images}.",
            )
        return invalid_image_config(served, model, request.image_config)


def _usage(output_tokens: int) -> dict[str, Any]:
    return {"promptTokenCount": 12, "candidatesTokenCount": output_tokens, "totalTokenCount": 12 + output_tokens}


def _render(reply: Reply, request: RecordedRequest) -> tuple[int, dict[str, Any]]:
    """The HTTP status and JSON body for ``reply``, shaped like the Generative Language API's."""
    if isinstance(reply, ErrorReply):
        return reply.http_status, _error_body(reply)
    envelope = {"modelVersion": request.model, "responseId": "fake-response"}
    if isinstance(reply, PromptBlocked):
        return 200, {"promptFeedback": {"blockReason": reply.reason}, "usageMetadata": _usage(0), **envelope}
    if isinstance(reply, CandidateBlocked):
        candidate: dict[str, Any] = {"finishReason": reply.finish_reason, "index": 0}
        if reply.finish_message:
            candidate["finishMessage"] = reply.finish_message
        return 200, {"candidates": [candidate], "usageMetadata": _usage(0), **envelope}
    if isinstance(reply, TextReply):
        parts: list[dict[str, Any]] = [{"text": reply.text}]
        candidate = {"content": {"role": "model", "parts": parts}, "finishReason": reply.finish_reason, "index": 0}
        return 200, {"candidates": [candidate], "usageMetadata": _usage(20), **envelope}
    width, height = output_size(request.image_config.get("aspectRatio", "1:1"), request.image_config.get("imageSize"))
    parts = [{"text": reply.text}] if reply.text else []
    if reply.with_thought_image:
        parts.append({"inlineData": _inline(_png(64, 64, (0, 0, 0))), "thought": True})
    image = reply.data if reply.data is not None else _png(width, height, reply.color)
    inline = _inline(image) if reply.data_text is None else {"mimeType": "image/png", "data": reply.data_text}
    parts.append({"inlineData": inline})
    candidate = {"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}
    return 200, {"candidates": [candidate], "usageMetadata": _usage(1290), **envelope}


def _error_body(reply: ErrorReply) -> dict[str, Any]:
    error: dict[str, Any] = {"code": reply.http_status, "message": reply.message, "status": reply.status}
    if reply.details:
        error["details"] = list(reply.details)
    return {"error": error}


def _png(width: int, height: int, color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _inline(data: bytes) -> dict[str, str]:
    return {"mimeType": "image/png", "data": base64.b64encode(data).decode("ascii")}


def _handler_for(fake: FakeGeminiServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            route = ROUTE.match(self.path.split("?", 1)[0])
            if route is None:
                self._send(404, _error_body(ErrorReply(404, "NOT_FOUND", f"{self.path} is not found.")))
                return
            try:
                body = json.loads(raw or b"{}")
            except json.JSONDecodeError:
                self._send(400, _error_body(ErrorReply(400, "INVALID_ARGUMENT", "Invalid JSON payload.")))
                return
            status, payload = fake._answer(route["model"], self.headers.get("x-goog-api-key"), body)
            self._send(status, payload)

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the request log is :attr:`FakeGeminiServer.requests`."""

    return Handler
