"""``build_server``: the tools, resources, prompts and completions, each a thin mapping onto the core."""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.tools import Tool
from mcp.server.mcpserver.utilities.func_metadata import FuncMetadata
from mcp_types import CallToolResult, ToolAnnotations
from pydantic import BaseModel, ConfigDict, Field

from imagegen_mcp import __version__, listings, logs
from imagegen_mcp.catalog import Catalog, ProviderSpec
from imagegen_mcp.config import Settings
from imagegen_mcp.errors import ImageGenError
from imagegen_mcp.listings import ModelsOutput, ProvidersOutput
from imagegen_mcp.providers.base import Progress
from imagegen_mcp.requests import ImageRequest, parse_arguments
from imagegen_mcp.results import GenerateImageOutput
from imagegen_mcp.server.client_logs import ClientLogHandler
from imagegen_mcp.server.content import error_content, generation_content, listing_content
from imagegen_mcp.server.prompts import add_prompts
from imagegen_mcp.server.resources import add_resources
from imagegen_mcp.server.schemas import input_schema, output_schema
from imagegen_mcp.service import ImageService

INSTRUCTIONS = """Generates and saves images. Call generate_image with a prompt; the result holds a small
preview, a resource link to the full image and the saved file's path. list_providers tells which providers
are available and how to fix the others; list_models lists models with their capabilities. Errors carry a
code and the steps that fix them. A fallback to another provider is always reported in the result."""


class ListModelsArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provider: str | None = Field(None, description="Only this provider's models.")


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

READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)
#: Makes new files and may call a paid cloud service; never changes or deletes anything that exists.
CREATES = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=True)


def _tool(
    fn: ToolFn,
    arguments: type[BaseModel],
    result: type[BaseModel],
    *,
    title: str,
    annotations: ToolAnnotations,
) -> Tool:
    """A tool whose input schema is ``arguments``' and whose output schema admits ``result`` or an error.

    The output schema is published through the SDK's hand-built tool metadata (``FuncMetadata`` with a schema
    and no model): the SDK advertises it as it is, and this server validates what it sends against it.
    """
    tool = Tool.from_function(
        fn,
        title=title,
        description=_one_paragraph(fn.__doc__ or ""),
        annotations=annotations,
    )
    metadata = FuncMetadata(arg_model=tool.fn_metadata.arg_model, output_schema=output_schema(result))
    return tool.model_copy(update={"parameters": input_schema(arguments), "fn_metadata": metadata})


def _one_paragraph(docstring: str) -> str:
    """A docstring as the tool description clients show: its lines joined, without the source's indentation."""
    return " ".join(inspect.cleandoc(docstring).split())


def build_server(settings: Settings, providers: Sequence[ProviderSpec] | None = None) -> MCPServer[Any]:
    """The MCP server for ``settings``; ``providers`` replaces the entry-point providers (tests, embedding)."""
    secrets = settings.secrets()
    logs.configure(settings.log_level, secrets)
    service = ImageService(settings, Catalog.load(settings, providers))

    client_logs = ClientLogHandler(secrets)
    logs.add_handler(client_logs)

    def guarded(fn: ToolFn) -> ToolFn:
        @functools.wraps(fn)
        async def call(ctx: Context) -> CallToolResult:
            with client_logs.serving(ctx.request_context.session):
                try:
                    return await fn(ctx)
                except ImageGenError as error:
                    return error_content(error, secrets)

        return call

    async def list_providers(ctx: Context) -> CallToolResult:
        """List the image providers: available or not (why, and the steps that fix it), default model,
        fallback order, and what a plain generate_image would use now."""
        parse_arguments(ListProvidersArgs, raw_arguments(ctx))
        output = listings.providers(service)
        return listing_content(output, listings.providers_text(output))

    async def list_models(ctx: Context) -> CallToolResult:
        """List the models of every provider (or one): ids for generate_image, capabilities (max resolution,
        negative prompt, tuned steps and guidance, aspect ratios), availability."""
        args = parse_arguments(ListModelsArgs, raw_arguments(ctx))
        output = listings.models(service, args.provider)
        return listing_content(output, listings.models_text(output))

    async def generate_image(ctx: Context) -> CallToolResult:
        """Generate images from a text prompt and save them. Returns per image a small preview, a resource
        link to the full-resolution file, its path and seed; and the model that made them, with any fallback
        or parameter change."""
        request = parse_arguments(ImageRequest, raw_arguments(ctx))
        result = await service.generate(request, Progress(ctx.report_progress))
        return generation_content(result)

    tools = [
        _tool(
            guarded(list_providers),
            ListProvidersArgs,
            ProvidersOutput,
            title="List providers",
            annotations=READ_ONLY,
        ),
        _tool(guarded(list_models), ListModelsArgs, ModelsOutput, title="List models", annotations=READ_ONLY),
        _tool(
            guarded(generate_image),
            ImageRequest,
            GenerateImageOutput,
            title="Generate image",
            annotations=CREATES,
        ),
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
        middleware=[client_logs.middleware()],
    )
    add_resources(server, service)
    add_prompts(server, service)
    return server
