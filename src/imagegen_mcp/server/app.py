"""``build_server``: the three tools and the resources, each a thin mapping onto :class:`ImageService`."""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError
from mcp.server.mcpserver.tools import Tool
from mcp.server.mcpserver.utilities.func_metadata import ArgModelBase
from mcp_types import CallToolResult, ToolAnnotations
from pydantic import BaseModel, ConfigDict, Field

from imagegen_mcp import __version__, logs
from imagegen_mcp.catalog import Catalog
from imagegen_mcp.config import Settings
from imagegen_mcp.errors import ImageGenError
from imagegen_mcp.providers.base import ImageProvider, Progress
from imagegen_mcp.requests import ImageRequest, parse_arguments
from imagegen_mcp.server import reports
from imagegen_mcp.server.content import (
    GenerateImageOutput,
    ModelsOutput,
    ProvidersOutput,
    error_content,
    generation_content,
    listing_content,
)
from imagegen_mcp.service import ImageService

INSTRUCTIONS = """Generates images. Call generate_image with a prompt; the result holds a small preview, a
resource link to the full image and the saved file's path. list_providers tells which providers are
available and why not; list_models lists models with their capabilities. Errors come with a code and steps
to fix them. A fallback to another provider is always reported in the result."""


class ListModelsArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provider: str | None = Field(None, description="Only this provider's models (see list_providers).")


class ListProvidersArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _RawArguments(ArgModelBase):
    """Hands the tool every argument untouched, so validation failures become structured errors here."""

    model_config = ConfigDict(extra="allow")

    def model_dump_one_level(self) -> dict[str, Any]:
        return {"arguments": dict(self.__pydantic_extra__ or {})}


ToolFn = Callable[..., Awaitable[CallToolResult]]


def _tool(fn: ToolFn, input_model: type[BaseModel], *, title: str, read_only: bool) -> Tool:
    tool = Tool.from_function(
        fn,
        title=title,
        annotations=ToolAnnotations(
            title=title, read_only_hint=read_only, idempotent_hint=read_only, open_world_hint=not read_only
        ),
    )
    tool.fn_metadata.arg_model = _RawArguments
    schema = input_model.model_json_schema()
    schema.pop("title", None)
    schema.pop("description", None)
    return tool.model_copy(update={"parameters": schema})


def build_server(settings: Settings, provider_types: Sequence[type[ImageProvider]] | None = None) -> MCPServer[Any]:
    """The MCP server for ``settings``; ``provider_types`` replaces the entry-point providers (tests, embedding)."""
    secrets = settings.secrets()
    logs.configure(settings.log_level, secrets)
    service = ImageService(settings, Catalog.load(settings, provider_types))

    def guarded(fn: ToolFn) -> ToolFn:
        @functools.wraps(fn)
        async def call(*args: Any, **kwargs: Any) -> CallToolResult:
            try:
                return await fn(*args, **kwargs)
            except ImageGenError as error:
                return error_content(error, secrets)

        return call

    async def list_providers(arguments: dict[str, Any]) -> Annotated[CallToolResult, ProvidersOutput]:
        """List every image provider: whether it is available (and if not, why and how to fix it), its
        default model, the fallback order, and which provider/model a plain generate_image would use now."""
        parse_arguments(ListProvidersArgs, arguments)
        output = reports.providers(service)
        return listing_content(output, reports.providers_text(output))

    async def list_models(arguments: dict[str, Any]) -> Annotated[CallToolResult, ModelsOutput]:
        """List the models of every provider (or one), with ids to pass to generate_image, their
        capabilities (max resolution, negative prompt, default steps/guidance, aspect ratios) and
        availability."""
        args = parse_arguments(ListModelsArgs, arguments)
        output = reports.models(service, args.provider)
        return listing_content(output, reports.models_text(output))

    async def generate_image(arguments: dict[str, Any], ctx: Context) -> Annotated[CallToolResult, GenerateImageOutput]:
        """Generate images from a text prompt and save them. Returns a small preview of each image, a
        resource link to the full-resolution file, its absolute path, the actual seed, the provider and
        model that made it and any fallback or parameter change. Omit model/provider to use the default;
        unspecified steps/guidance use each model's tuned values."""
        request = parse_arguments(ImageRequest, arguments)
        result = await service.generate(request, Progress(ctx.report_progress))
        return generation_content(result)

    tools = [
        _tool(guarded(list_providers), ListProvidersArgs, title="List image providers", read_only=True),
        _tool(guarded(list_models), ListModelsArgs, title="List image models", read_only=True),
        _tool(guarded(generate_image), ImageRequest, title="Generate image", read_only=False),
    ]

    @asynccontextmanager
    async def lifespan(_: MCPServer[Any]) -> AsyncIterator[dict[str, Any]]:
        try:
            yield {}
        finally:
            await service.aclose()

    server: MCPServer[Any] = MCPServer(
        "imagegen-mcp",
        title="Image generation",
        instructions=INSTRUCTIONS,
        version=__version__,
        tools=tools,
        lifespan=lifespan,
        log_level=settings.log_level,
    )
    _add_resources(server, service)
    return server


def _json(model: BaseModel | list[Any]) -> str:
    if isinstance(model, BaseModel):
        return model.model_dump_json(indent=2)
    return json.dumps(model, indent=2)


def _add_resources(server: MCPServer[Any], service: ImageService) -> None:
    @server.resource("imagegen://providers", name="providers", title="Provider status", mime_type="application/json")
    def providers_resource() -> str:
        return _json(reports.providers(service))

    @server.resource(
        "imagegen://providers/{name}",
        name="provider",
        title="One provider's status",
        mime_type="application/json",
    )
    def provider_resource(name: str) -> str:
        for status in reports.providers(service).providers:
            if status.name == name:
                return _json(status)
        raise ResourceError(f"Unknown provider {name!r}; known: {', '.join(service.catalog.providers)}")

    @server.resource("imagegen://models", name="models", title="Model catalog", mime_type="application/json")
    def models_resource() -> str:
        return _json(reports.models(service, None))

    @server.resource(
        "imagegen://images/{image_id}",
        name="image",
        title="A generated image (full resolution)",
        mime_type="image/png",
    )
    def image_resource(image_id: str) -> bytes:
        try:
            return service.store.read(image_id)
        except FileNotFoundError:
            raise ResourceError(f"No image {image_id!r} in {service.store.root}") from None

    @server.resource(
        "imagegen://generations/recent",
        name="recent-generations",
        title="Recent generations of this server",
        mime_type="application/json",
    )
    def recent_resource() -> str:
        return _json(reports.recent(service))
