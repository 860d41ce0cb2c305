"""SSE and streamable-HTTP transports: loopback by default with Host/Origin checks, a bearer token otherwise."""

from __future__ import annotations

import hmac
import ipaddress
import json
from typing import Any, Literal

from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import ASGIApp, Receive, Scope, Send

from imagegen_mcp.config import Settings
from imagegen_mcp.errors import ConfigError
from imagegen_mcp.server.gallery import add_gallery_route

HttpTransport = Literal["sse", "streamable-http"]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class BearerTokenMiddleware:
    """Refuses every HTTP request that does not carry ``Authorization: Bearer <token>``."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                body = json.dumps({"error": "unauthorized", "message": "missing or wrong bearer token"}).encode()
                await send(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def http_app(server: MCPServer[Any], settings: Settings, transport: HttpTransport, host: str) -> ASGIApp:
    """The ASGI app for ``transport``. Refuses a non-loopback bind unless IMAGEGEN_AUTH_TOKEN is set."""
    token = settings.auth_token.get_secret_value() if settings.auth_token else None
    if is_loopback(host):
        # Requests from web pages (DNS rebinding) are refused by Host and Origin checks.
        security = TransportSecuritySettings(
            enable_dns_rebinding_protection=True,
            allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*", "127.0.0.1", "localhost", "[::1]"],
            allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"],
        )
    elif token is None:
        raise ConfigError(
            f"Refusing to listen on {host}, which is not a loopback address, without IMAGEGEN_AUTH_TOKEN: anyone "
            "who can reach the port could spend your provider credits. Set IMAGEGEN_AUTH_TOKEN to a long random "
            "value (clients send 'Authorization: Bearer <token>'), or bind to 127.0.0.1."
        )
    else:
        # Reachable by name from other machines: the Host header cannot be predicted; the token guards access.
        security = TransportSecuritySettings(enable_dns_rebinding_protection=False)
    app: ASGIApp
    if transport == "sse":
        app = server.sse_app(transport_security=security, host=host)
    else:
        add_gallery_route(server, security)  # the viewer and gallery page for people, under the same checks
        app = server.streamable_http_app(transport_security=security, host=host)
    return BearerTokenMiddleware(app, token) if token else app


async def serve_http(app: ASGIApp, settings: Settings, host: str, port: int, stop_grace_s: float) -> None:
    """Serve :func:`http_app`'s ``app`` until SIGINT or SIGTERM; open requests and streams then get
    ``stop_grace_s`` to finish."""
    import uvicorn

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=settings.log_level.lower(),
        lifespan="on",
        # Typed int, but handed to asyncio.wait_for, which takes any number of seconds.
        timeout_graceful_shutdown=stop_grace_s,  # type: ignore[arg-type]
    )
    await uvicorn.Server(config).serve()
