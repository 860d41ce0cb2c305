"""Pages in a real browser: Debian's headless Chromium driven by Playwright, the test MCP Apps host
(``tests/apps_host/host.html``) bridged to a real MCP client, and a loopback HTTP server in a thread.

Playwright's own browser download cannot run here, so it drives the system's Chromium (``CHROMIUM``, default
``/usr/bin/chromium``; ``scripts/test.sh`` installs it) with a fresh profile and no background networking. The
host and the View are served by the browser's request routing from two made-up origins, so the View runs in a
frame of another origin than its host, under the content security policy its resource declares, as the MCP Apps
specification requires of hosts.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from mcp.client import Client
from mcp.client.extension import ClientExtension, advertise
from mcp.server.apps import APP_MIME_TYPE, EXTENSION_ID
from mcp_types import CallToolResult, TextResourceContents
from playwright.async_api import BrowserContext, Frame, Locator, Page, Route, async_playwright
from starlette.types import ASGIApp

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
HOST_ORIGIN = "http://host.test"
VIEW_ORIGIN = "http://sandbox.test"
HOST_PAGE = Path(__file__).parent / "apps_host" / "host.html"
#: Where screenshots are copied besides the test's own folder (``docs/screenshots`` for the README's).
SCREENSHOT_DIR_VARIABLE = "IMAGEGEN_SCREENSHOT_DIR"


def apps_client_extension() -> ClientExtension:
    """What a client that renders MCP Apps advertises."""
    return advertise(EXTENSION_ID, {"mimeTypes": [APP_MIME_TYPE]})


def require_chromium() -> None:
    """Skip without a Chromium, except in CI, where its absence is a broken setup."""
    if not (CHROMIUM.is_file() or shutil.which(str(CHROMIUM))) and not os.environ.get("CI"):
        pytest.skip(f"no Chromium at {CHROMIUM}: `apt-get install chromium` (scripts/test.sh does)")


@asynccontextmanager
async def chromium(profile: Path, **options: Any) -> AsyncIterator[BrowserContext]:
    """A headless Chromium with a fresh profile at ``profile``; ``options`` go to the browser context."""
    require_chromium()
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            profile, executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True, **options
        )
        try:
            yield context
        finally:
            await context.close()


NONE, SELF = "'none'", "'self'"


def view_csp(ui: dict[str, Any]) -> str:
    """The policy a host puts on a View, built from the resource's ``_meta.ui.csp`` as the specification's
    "CSP Construction from Metadata" does."""
    csp: dict[str, list[str]] = ui.get("csp") or {}

    def extra(key: str) -> str:
        return " ".join(csp.get(key, []))

    resources = extra("resourceDomains")
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src 'self' 'unsafe-inline' {resources}".strip(),
            f"style-src 'self' 'unsafe-inline' {resources}".strip(),
            f"connect-src 'self' {extra('connectDomains')}".strip(),
            f"img-src 'self' data: {resources}".strip(),
            f"font-src 'self' {resources}".strip(),
            f"media-src 'self' data: {resources}".strip(),
            f"frame-src {extra('frameDomains') or NONE}",
            "object-src 'none'",
            f"base-uri {extra('baseUriDomains') or SELF}",
        ]
    )


def wire(result: CallToolResult) -> dict[str, Any]:
    return result.model_dump(mode="json", by_alias=True, exclude_none=True)


class AppsHost:
    """The test host page in ``page``, proxying its View's requests to ``client``."""

    def __init__(self, page: Page, client: Client, visibility: dict[str, list[str]]) -> None:
        self.page = page
        self.client = client
        self.visibility = visibility
        #: Every request the View had proxied: (method, params).
        self.proxied: list[tuple[str, dict[str, Any]]] = []

    @classmethod
    async def open(cls, context: BrowserContext, client: Client, resource_uri: str) -> AppsHost:
        """Read the View's resource as a host does, and load the host page."""
        tools = (await client.list_tools()).tools
        visibility = {
            tool.name: list((tool.meta or {}).get("ui", {}).get("visibility", ["model", "app"])) for tool in tools
        }
        [content] = (await client.read_resource(resource_uri)).contents
        assert isinstance(content, TextResourceContents) and content.mime_type == APP_MIME_TYPE
        policy = view_csp((content.meta or {}).get("ui", {}))
        page = await context.new_page()
        host = cls(page, client, visibility)

        async def serve_host(route: Route) -> None:
            await route.fulfill(body=HOST_PAGE.read_text(), content_type="text/html")

        async def serve_view(route: Route) -> None:
            await route.fulfill(
                body=content.text, content_type="text/html", headers={"content-security-policy": policy}
            )

        await page.route(f"{HOST_ORIGIN}/**", serve_host)
        await page.route(f"{VIEW_ORIGIN}/**", serve_view)
        await page.expose_function("mcp", host.forward)
        await page.goto(f"{HOST_ORIGIN}/")
        return host

    async def forward(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self.proxied.append((method, params))
        if method == "tools/call":
            return wire(await self.client.call_tool(params["name"], params.get("arguments") or {}))
        if method == "resources/read":
            read = await self.client.read_resource(params["uri"])
            return read.model_dump(mode="json", by_alias=True, exclude_none=True)
        raise ValueError(f"the test host does not proxy {method}")

    async def show(
        self, tool: str, arguments: dict[str, Any], result: CallToolResult, *, theme: str = "light"
    ) -> Frame:
        """Render the View for a call of ``tool`` that gave ``result``; returns the View's frame."""
        context = {
            "theme": theme,
            "displayMode": "inline",
            "availableDisplayModes": ["inline"],
            "containerDimensions": {"maxHeight": 2000, "width": 720},
            "platform": "web",
            "toolInfo": {"tool": {"name": tool, "inputSchema": {"type": "object"}}},
        }
        options = {
            "context": context,
            "toolInput": arguments,
            "toolResult": wire(result),
            "visibility": self.visibility,
        }
        await self.page.evaluate(
            "([src, options]) => window.startView(src, options)", [f"{VIEW_ORIGIN}/view.html", options]
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for frame in self.page.frames:
                if frame.url.startswith(VIEW_ORIGIN):
                    return frame
            await asyncio.sleep(0.05)
        raise AssertionError("the View's frame did not load")


async def save_screenshot(target: Page | Locator, name: str, folder: Path) -> bytes:
    """A JPEG of ``target`` (a tenth of a PNG's bytes for photographs) in ``folder``, and in
    ``$IMAGEGEN_SCREENSHOT_DIR`` when that is set."""
    data = await target.screenshot(type="jpeg", quality=80)
    (folder / name).write_bytes(data)
    if shared := os.environ.get(SCREENSHOT_DIR_VARIABLE):
        Path(shared).mkdir(parents=True, exist_ok=True)
        (Path(shared) / name).write_bytes(data)
    return data


@contextmanager
def serving(app: ASGIApp) -> Iterator[str]:
    """Serve ``app`` on a free loopback port, in a thread with its own event loop; yields the base URL."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, lifespan="on", log_level="warning"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[listener])), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        listener.close()
