"""``build_server``: the tools and the resources, each a thin mapping onto :class:`ImageService`."""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError
from mcp.server.mcpserver.tools import Tool
from mcp_types import CallToolResult, ToolAnnotations
from pydantic import BaseModel, ConfigDict, Field

from imagegen_mcp import __version__, listings, logs, results
from imagegen_mcp.catalog import Catalog, ProviderSpec
from imagegen_mcp.config import Settings
from imagegen_mcp.errors import ImageGenError
from imagegen_mcp.listings import ModelsOutput, ProvidersOutput
from imagegen_mcp.providers.base import Progress
from imagegen_mcp.requests import ImageRequest, parse_arguments
from imagegen_mcp.results import GenerateImageOutput
from imagegen_mcp.server.content import error_content, generation_content, listing_content
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


def raw_arguments(ctx: Context) -> dict[str, Any]:
    """The arguments of the ``tools/call`` request exactly as the client sent them.

    The tool functions declare no parameters, so the SDK validates nothing and passes nothing: every argument
    is validated by this server's own request models, and a mistake becomes a structured ``invalid_request``
    error instead of the SDK's plain text. The request's params are public in ``ServerRequestContext``.
    """
    params: Mapping[str, Any] = ctx.request_context.params or {}
    arguments = params.get("arguments")
    return dict(arguments) if isinstance(arguments, Mapping) else {}


ToolFn = Callable[[Context], Awaitable[CallToolResult]]


def _tool(fn: ToolFn, input_model: type[BaseModel], *, title: str, read_only: bool) -> Tool:
    tool = Tool.from_function(
        fn,
        title=title,
        annotations=ToolAnnotations(
            title=title, read_only_hint=read_only, idempotent_hint=read_only, open_world_hint=not read_only
        ),
    )
    schema = input_model.model_json_schema()
    schema.pop("title", None)
    schema.pop("description", None)
    return tool.model_copy(update={"parameters": schema})


def build_server(settings: Settings, providers: Sequence[ProviderSpec] | None = None) -> MCPServer[Any]:
    """The MCP server for ``settings``; ``providers`` replaces the entry-point providers (tests, embedding)."""
    secrets = settings.secrets()
    logs.configure(settings.log_level, secrets)
    service = ImageService(settings, Catalog.load(settings, providers))

    def guarded(fn: ToolFn) -> ToolFn:
        @functools.wraps(fn)
        async def call(ctx: Context) -> CallToolResult:
            try:
                return await fn(ctx)
            except ImageGenError as error:
                return error_content(error, secrets)

        return call

    async def list_providers(ctx: Context) -> Annotated[CallToolResult, ProvidersOutput]:
        """List every image provider: whether it is available (and if not, why and how to fix it), its
        default model, the fallback order, and which provider/model a plain generate_image would use now."""
        parse_arguments(ListProvidersArgs, raw_arguments(ctx))
        output = listings.providers(service)
        return listing_content(output, listings.providers_text(output))

    async def list_models(ctx: Context) -> Annotated[CallToolResult, ModelsOutput]:
        """List the models of every provider (or one), with ids to pass to generate_image, their
        capabilities (max resolution, negative prompt, default steps/guidance, aspect ratios) and
        availability."""
        args = parse_arguments(ListModelsArgs, raw_arguments(ctx))
        output = listings.models(service, args.provider)
        return listing_content(output, listings.models_text(output))

    async def generate_image(ctx: Context) -> Annotated[CallToolResult, GenerateImageOutput]:
        """Generate images from a text prompt and save them. Returns a small preview of each image, a
        resource link to the full-resolution file, its absolute path, the actual seed, the provider and
        model that made it and any fallback or parameter change. Omit model/provider to use the default;
        unspecified steps/guidance use each model's tuned values."""
        request = parse_arguments(ImageRequest, raw_arguments(ctx))
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
        return _json(listings.providers(service))

    @server.resource(
        "imagegen://providers/{name}",
        name="provider",
        title="One provider's status",
        mime_type="application/json",
    )
    def provider_resource(name: str) -> str:
        for status in listings.providers(service).providers:
            if status.name == name:
                return _json(status)
        raise ResourceError(f"Unknown provider {name!r}; known: {', '.join(service.catalog.providers)}")

    @server.resource("imagegen://models", name="models", title="Model catalog", mime_type="application/json")
    def models_resource() -> str:
        return _json(listings.models(service, None))

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
        return _json(results.recent(list(service.recent)))
