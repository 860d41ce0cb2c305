"""``build_server``: the tools, resources, prompts and completions, each a thin mapping onto the core."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.tools import Tool
from mcp.server.mcpserver.utilities.func_metadata import FuncMetadata
from mcp_types import CallToolResult, ToolAnnotations
from pydantic import BaseModel, ConfigDict, Field

from imagegen_mcp import __version__, archive, listings, logs, model_search
from imagegen_mcp.archive import DeleteImageArgs, DeleteImageOutput, SearchImagesArgs, SearchImagesOutput
from imagegen_mcp.catalog import Catalog, ProviderSpec
from imagegen_mcp.config import Settings
from imagegen_mcp.errors import ConfigError, ImageGenError, internal_error
from imagegen_mcp.jobs import CancelJobArgs, GetJobArgs, JobOutput
from imagegen_mcp.listings import ModelsOutput, ProvidersOutput
from imagegen_mcp.model_search import SearchModelsArgs, SearchModelsOutput
from imagegen_mcp.requests import EditImageArgs, GenerateImageArgs, parse_arguments
from imagegen_mcp.results import GenerateImageOutput
from imagegen_mcp.runtime import HistoryFactory, Runtime
from imagegen_mcp.server.apps import UI_META, add_app_resources, apps_extension
from imagegen_mcp.server.changes import CatalogChanges
from imagegen_mcp.server.client_logs import ClientLogHandler
from imagegen_mcp.server.content import error_content, job_content, listing_content, view_content
from imagegen_mcp.server.prompts import add_prompts
from imagegen_mcp.server.resources import CATALOG_URIS, add_resources
from imagegen_mcp.server.schemas import input_schema, output_schema
from imagegen_mcp.service import ImageService

logger = logging.getLogger(__name__)

INSTRUCTIONS = """Generates and saves images. Call generate_image with a prompt; the result holds a small
preview, a resource link to the full image and the saved file's path; edit_image changes an image. A generation
that takes longer than wait_s answers with a job id instead: call get_job with it for the images. search_images
finds earlier images by the words of their prompt. list_providers tells which providers are available and how
to fix the others; list_models lists models with their capabilities; search_models finds more in Runware's
catalog. Errors carry a code and the steps that fix them. A fallback to another provider is always reported in
the result."""


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
#: Asks a vendor's catalog (outside this server), changing nothing.
SEARCHES = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=True)
#: Makes new files and may call a paid cloud service; never changes or deletes anything that exists.
CREATES = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=True)
#: Reads a job, waiting for it: changes nothing.
WAITS = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)
#: Stops work in progress; asking twice changes nothing more.
STOPS = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False)
#: Removes a file for good.
DELETES = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False)


def _tool(
    fn: ToolFn,
    arguments: type[BaseModel],
    result: type[BaseModel],
    *,
    title: str,
    annotations: ToolAnnotations,
    alternatives: Sequence[type[BaseModel]] = (),
    meta: dict[str, Any] | None = None,
) -> Tool:
    """A tool whose input schema is ``arguments``' and whose output schema admits ``result`` (or one of
    ``alternatives``) or an error; ``meta`` is its ``_meta`` (the MCP Apps view that shows its results).

    The output schema is published through the SDK's hand-built tool metadata (``FuncMetadata`` with a schema
    and no model): the SDK advertises it as it is, and this server validates what it sends against it.
    """
    description = _one_paragraph(fn.__doc__ or "")
    tool = Tool.from_function(fn, title=title, description=description, annotations=annotations, meta=meta)
    schema = output_schema(result, alternatives=alternatives)
    metadata = FuncMetadata(arg_model=tool.fn_metadata.arg_model, output_schema=schema)
    return tool.model_copy(update={"parameters": input_schema(arguments), "fn_metadata": metadata})


def _without_payloads(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments as the history keeps them: a data URI (megabytes of base64) becomes a short note."""

    def short(value: Any) -> Any:
        if isinstance(value, str) and value[:5].lower() == "data:":
            return f"{value.split(',', 1)[0]},... ({len(value)} characters)"
        if isinstance(value, list):
            return [short(item) for item in value]
        return value

    return {name: short(value) for name, value in arguments.items()}


def _one_paragraph(docstring: str) -> str:
    """A docstring as the tool description clients show: its lines joined, without the source's indentation."""
    return " ".join(inspect.cleandoc(docstring).split())


@dataclass(frozen=True)
class App:
    """The MCP server, and what the process that runs it may ask of it."""

    server: MCPServer[Any]
    #: Read the config file again and apply its models (see :func:`build_app`).
    reload_config: Callable[[], Awaitable[bool]]


def build_server(
    settings: Settings, providers: Sequence[ProviderSpec] | None = None, *, history: HistoryFactory | None = None
) -> MCPServer[Any]:
    """The MCP server for ``settings``; ``providers`` replaces the entry-point providers (tests, embedding), and
    ``history`` the embedded SQLite job and history store (a shared database for several replicas, say)."""
    return build_app(settings, providers, history=history).server


def build_app(
    settings: Settings, providers: Sequence[ProviderSpec] | None = None, *, history: HistoryFactory | None = None
) -> App:
    """:func:`build_server`, with :attr:`App.reload_config`: the models and default models of the config file
    as it is now, applied only when every provider accepts its own (else logged, and nothing changes); clients
    hear of a change through ``notifications/resources/list_changed``. Other settings need a restart."""
    secrets = settings.secrets()
    logs.configure(settings.log_level, secrets)
    service = ImageService(settings, Catalog.load(settings, providers))
    changes = CatalogChanges()
    runtime = Runtime(service, history) if history is not None else Runtime(service)
    redactor = service.redactor
    client_logs = ClientLogHandler(secrets)
    logs.add_handler(client_logs)

    def guarded(fn: ToolFn) -> ToolFn:
        @functools.wraps(fn)
        async def call(ctx: Context) -> CallToolResult:
            with client_logs.serving(ctx.request_context.session):
                try:
                    return await fn(ctx)
                except ImageGenError as error:
                    return error_content(redactor.payload(error))
                except Exception as exc:  # a bug of ours: still a structured answer, and a log line to find
                    return error_content(redactor.payload(internal_error(f"{fn.__name__} failed", exc)))

        return call

    async def list_providers(ctx: Context) -> CallToolResult:
        """List the image providers: available or not (why, and the steps that fix it), default model,
        fallback order, what a plain generate_image would use now, and what was spent today and this month."""
        parse_arguments(ListProvidersArgs, raw_arguments(ctx))
        output = listings.providers(service, spent=await runtime.usage())
        return listing_content(output, listings.providers_text(output))

    async def list_models(ctx: Context) -> CallToolResult:
        """List the models of every provider (or one): ids for generate_image, capabilities (max resolution,
        negative prompt, tuned steps and guidance, aspect ratios), availability."""
        args = parse_arguments(ListModelsArgs, raw_arguments(ctx))
        output = listings.models(service, args.provider)
        return listing_content(output, listings.models_text(output))

    async def search_models(ctx: Context) -> CallToolResult:
        """Search Runware's catalog of models and LoRAs (beyond the configured ones) by name or tag, category
        (checkpoint, lora) and architecture. Returns ids that generate_image's model takes as they are (a
        LoRA's id goes in loras), with the recommended steps and guidance where the vendor gives them."""
        args = parse_arguments(SearchModelsArgs, raw_arguments(ctx))
        output = await model_search.search(service, args)
        return listing_content(output, model_search.search_text(output))

    async def generate_image(ctx: Context) -> CallToolResult:
        """Generate images from a text prompt and save them. Returns per image a small preview, a resource
        link to the full-resolution file, its path and seed; and the model that made them, with any fallback
        or parameter change. Past wait_s it returns a job id for get_job instead; the work goes on."""
        arguments = raw_arguments(ctx)
        request = parse_arguments(GenerateImageArgs, arguments)
        jobs = runtime.jobs
        job_id = await jobs.submit("generate", request, arguments)
        wait_s = settings.wait_s if request.wait_s is None else request.wait_s
        view = await jobs.wait(job_id, wait_s, ctx.report_progress, cancel_with_caller=True)
        return view_content(view)

    async def edit_image(ctx: Context) -> CallToolResult:
        """Edit an image by an instruction: image-to-image (strength), inpainting (mask: white repaints) or
        with reference images, on a model that can (see list_models capabilities.inputs). The image, mask
        and references are imagegen://images/{id} URIs, allowed absolute paths or data: URIs. Returns what
        generate_image returns, with the input images' ids and hashes."""
        arguments = raw_arguments(ctx)
        request = parse_arguments(EditImageArgs, arguments)
        jobs = runtime.jobs
        job_id = await jobs.submit("edit", request, _without_payloads(arguments))
        wait_s = settings.wait_s if request.wait_s is None else request.wait_s
        view = await jobs.wait(job_id, wait_s, ctx.report_progress, cancel_with_caller=True)
        return view_content(view)

    async def get_job(ctx: Context) -> CallToolResult:
        """The result of a generation job (as generate_image returns it) once it is done, waiting up to
        wait_s for it; else the job's state and progress."""
        args = parse_arguments(GetJobArgs, raw_arguments(ctx))
        wait_s = settings.wait_s if args.wait_s is None else args.wait_s
        return view_content(await runtime.jobs.wait(args.job_id, wait_s, ctx.report_progress))

    async def cancel_job(ctx: Context) -> CallToolResult:
        """Stop a generation job (local models stop at the next step, a cloud wait is abandoned) and return
        its state; a job that already finished is left as it is."""
        args = parse_arguments(CancelJobArgs, raw_arguments(ctx))
        return job_content(await runtime.jobs.cancel(args.job_id), still_running=False)

    async def search_images(ctx: Context) -> CallToolResult:
        """Find earlier images by the words of their prompt (the last word may be unfinished), provider,
        model or date, newest first. Returns ids and URIs (for edits and resources/read), prompts, sizes."""
        args = parse_arguments(SearchImagesArgs, raw_arguments(ctx))
        output = await archive.search(runtime.history, args)
        return listing_content(output, archive.search_text(output))

    async def delete_image(ctx: Context) -> CallToolResult:
        """Delete one generated image by its id: its file is removed and its history entry marked deleted."""
        args = parse_arguments(DeleteImageArgs, raw_arguments(ctx))
        output = await archive.delete(runtime.history, service.store, args.image_id)
        return listing_content(output, f"Deleted {output.deleted.uri} ({output.deleted.prompt[:80]}).")

    tools = [
        _tool(
            guarded(list_providers), ListProvidersArgs, ProvidersOutput, title="List providers", annotations=READ_ONLY
        ),
        _tool(guarded(list_models), ListModelsArgs, ModelsOutput, title="List models", annotations=READ_ONLY),
        _tool(
            guarded(search_models), SearchModelsArgs, SearchModelsOutput, title="Search models", annotations=SEARCHES
        ),
        _tool(
            guarded(generate_image),
            GenerateImageArgs,
            GenerateImageOutput,
            alternatives=[JobOutput],
            title="Generate image",
            annotations=CREATES,
            meta=UI_META,
        ),
        _tool(
            guarded(edit_image),
            EditImageArgs,
            GenerateImageOutput,
            alternatives=[JobOutput],
            title="Edit image",
            annotations=CREATES,
            meta=UI_META,
        ),
        _tool(
            guarded(get_job),
            GetJobArgs,
            GenerateImageOutput,
            alternatives=[JobOutput],
            title="Get job",
            annotations=WAITS,
        ),
        _tool(guarded(cancel_job), CancelJobArgs, JobOutput, title="Cancel job", annotations=STOPS),
        _tool(
            guarded(search_images),
            SearchImagesArgs,
            SearchImagesOutput,
            title="Search images",
            annotations=READ_ONLY,
            meta=UI_META,
        ),
        _tool(guarded(delete_image), DeleteImageArgs, DeleteImageOutput, title="Delete image", annotations=DELETES),
    ]

    @asynccontextmanager
    async def lifespan(_: MCPServer[Any]) -> AsyncIterator[dict[str, Any]]:
        async with runtime.session():
            yield {}

    server: MCPServer[Any] = MCPServer(
        "imagegen-mcp",
        title="Image generation",
        instructions=INSTRUCTIONS,
        version=__version__,
        tools=tools,
        lifespan=lifespan,
        log_level=settings.log_level,
        middleware=[client_logs.middleware(), changes.middleware()],
        extensions=[apps_extension()],
        subscriptions=changes.bus,
    )
    add_resources(server, service, runtime)
    add_prompts(server, service)
    add_app_resources(server, service, runtime)

    async def reload_config() -> bool:
        try:
            changed = service.catalog.reload(service.settings.reread())
        except ConfigError as error:
            logger.error("The config file was not applied; the models stay as they were. %s", redactor.text(str(error)))
            return False
        logger.info("Config file read again: %s", "the models changed" if changed else "no model changed")
        if changed:
            await changes.announce(CATALOG_URIS)
        return changed

    return App(server, reload_config)
