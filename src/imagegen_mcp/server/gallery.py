"""``GET /gallery``: the viewer and gallery page for people, beside ``/mcp`` on the streamable HTTP transport.

It is the page MCP Apps hosts show, opened in a browser: it sends its requests to ``/mcp`` itself, so it passes
the same checks as any client there (Host and Origin on loopback, the bearer token when one is set, which the
transport's middleware applies to every path), and every image it shows comes through the server's resources,
from the output root only. The page is refused here under the same Host and Origin checks, and sent with a
content security policy that allows its own inline style and script (by hash), images from data: URIs and
requests to this origin, nothing else.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.types import ASGIApp

from imagegen_mcp.config import Settings
from imagegen_mcp.server.apps import page

GALLERY_PATH = "/gallery"
LOOPBACK = "127.0.0.1"


def content_security_policy() -> str:
    built = page()
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src 'sha256-{built.script_sha256}'",
            f"style-src 'sha256-{built.style_sha256}'",
            "img-src data:",
            "connect-src 'self'",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )


def add_gallery_route(server: MCPServer[Any], security: TransportSecuritySettings) -> None:
    """Serve the page at :data:`GALLERY_PATH` of the app ``server.streamable_http_app`` builds next."""
    checks = TransportSecurityMiddleware(security)
    headers = {
        "content-security-policy": content_security_policy(),
        "x-content-type-options": "nosniff",
        "referrer-policy": "no-referrer",
        "cache-control": "no-store",
    }

    @server.custom_route(GALLERY_PATH, methods=["GET"], include_in_schema=False)  # type: ignore[untyped-decorator]
    async def gallery(request: Request) -> Response:
        refused = await checks.validate_request(request)
        if refused is not None:
            return refused
        return HTMLResponse(page().html, headers=headers)


async def serve_gallery(
    app: ASGIApp, settings: Settings, port: int, stop_grace_s: float, ready: Callable[[str], None]
) -> None:
    """Serve ``app`` (:func:`~imagegen_mcp.server.http.http_app` for loopback) on 127.0.0.1 (``port`` 0: any free
    one) and call ``ready`` with the gallery's URL once the port is bound, before the first request can arrive."""
    import uvicorn

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((LOOPBACK, port))
    listener.listen(128)  # from here on a browser's connection waits in the backlog until uvicorn accepts it
    bound = listener.getsockname()[1]
    config = uvicorn.Config(
        app,
        log_level=settings.log_level.lower(),
        lifespan="on",
        # Typed int, but handed to asyncio.wait_for, which takes any number of seconds.
        timeout_graceful_shutdown=stop_grace_s,  # type: ignore[arg-type]
    )
    ready(f"http://{LOOPBACK}:{bound}{GALLERY_PATH}")
    with listener:
        await uvicorn.Server(config).serve(sockets=[listener])
