"""The image viewer and gallery as an MCP App: one self-contained HTML page, a ``ui://`` resource that
``generate_image``, ``edit_image`` and ``search_images`` point at (``_meta.ui.resourceUri``), and the two
resources it reads besides the full images: thumbnails and one image's details.

Hosts that render MCP Apps show the page in a sandboxed frame and hand it the tool's result; the page then asks
for the full image (``resources/read`` of ``imagegen://images/{id}``) and acts through the public tools
(``generate_image`` with a new seed, ``edit_image``, ``delete_image``, ``search_images``). Clients without Apps
support ignore the resource and the tool metadata: their tool results are the same as without it. No tool is
added, so the tool list grows by the three ``_meta`` entries only.

The page is assembled from ``ui/app.html``, ``ui/app.css`` and ``ui/app.js`` (no build step, no Node); it loads
nothing from anywhere and declares an empty content security policy (no outside origin at all).
"""

from __future__ import annotations

import base64
import functools
import hashlib
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final

import anyio
from mcp.server.apps import Apps, ResourceCsp
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError

from imagegen_mcp.errors import ImageGenError
from imagegen_mcp.gallery import THUMBNAIL_MIME, Thumbnails, image_details
from imagegen_mcp.runtime import Runtime
from imagegen_mcp.service import ImageService

APP_URI: Final = "ui://imagegen/viewer.html"
#: The ``_meta`` of the tools whose results the page shows.
UI_META: Final[dict[str, Any]] = {"ui": {"resourceUri": APP_URI}}
THUMBNAIL_TEMPLATE: Final = "imagegen://images/{image_id}/thumbnail"
DETAILS_TEMPLATE: Final = "imagegen://images/{image_id}/details"
STYLE_MARK = "/*STYLE*/"
SCRIPT_MARK = "/*SCRIPT*/"


@dataclass(frozen=True)
class Page:
    """The assembled page and the hashes of its inline style and script (for an HTTP content security policy)."""

    html: str
    style_sha256: str
    script_sha256: str


@functools.cache
def page() -> Page:
    folder = resources.files("imagegen_mcp.server").joinpath("ui")
    template = folder.joinpath("app.html").read_text("utf-8")
    style = folder.joinpath("app.css").read_text("utf-8")
    script = folder.joinpath("app.js").read_text("utf-8")
    if "</" in style or "</script" in script.lower():
        raise ValueError("the page's style and script must not close their element")
    html = template.replace(STYLE_MARK, style).replace(SCRIPT_MARK, script)
    return Page(html=html, style_sha256=_sha256(style), script_sha256=_sha256(script))


def _sha256(text: str) -> str:
    return base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")


def apps_extension() -> Apps:
    """The MCP Apps extension for ``MCPServer(extensions=[...])``: advertises it and serves the page."""
    apps = Apps()
    apps.add_html_resource(
        APP_URI,
        page().html,
        name="image-viewer",
        title="Image viewer and gallery",
        description="Shows generated images at full resolution with their provenance; new variation, edit, delete; "
        "a searchable gallery of the history.",
        csp=ResourceCsp(),
        prefers_border=True,
    )
    return apps


def add_app_resources(server: MCPServer[Any], service: ImageService, runtime: Runtime) -> None:
    """The thumbnails and image details the page reads (plain resources: any client may read them)."""
    thumbnails = Thumbnails(service.store)

    @server.resource(
        THUMBNAIL_TEMPLATE,
        name="image-thumbnail",
        title="A generated image's thumbnail",
        description="A WebP at most 256 px on its longest side, for grids of images.",
        mime_type=THUMBNAIL_MIME,
    )
    async def thumbnail_resource(image_id: str) -> bytes:
        try:
            return await anyio.to_thread.run_sync(thumbnails.get, image_id)
        except FileNotFoundError:
            raise ResourceError(f"No image {image_id!r} in {service.store.root}") from None

    @server.resource(
        DETAILS_TEMPLATE,
        name="image-details",
        title="A generated image's details",
        description="The image's record, the request and result of the call that made it, the images it was "
        "edited from and those edited from it.",
        mime_type="application/json",
    )
    async def details_resource(image_id: str) -> str:
        try:
            return (await image_details(runtime.history, image_id)).model_dump_json()
        except ImageGenError as error:
            raise ResourceError(error.message) from None
