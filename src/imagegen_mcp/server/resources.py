"""The resources (provider status, the model catalog, images, generations, jobs) and the completions of
resource-template arguments."""

from __future__ import annotations

import json
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError
from mcp_types import Completion, CompletionArgument, CompletionContext, PromptReference, ResourceTemplateReference
from pydantic import BaseModel

from imagegen_mcp import listings
from imagegen_mcp.errors import ImageGenError
from imagegen_mcp.jobs import Done, Ended, JobView
from imagegen_mcp.runtime import Runtime
from imagegen_mcp.server.prompts import complete_prompt_argument
from imagegen_mcp.service import ImageService

PROVIDER_TEMPLATE = "imagegen://providers/{name}"
IMAGE_TEMPLATE = "imagegen://images/{image_id}"
GENERATION_TEMPLATE = "imagegen://generations/{job_id}"
JOB_TEMPLATE = "imagegen://jobs/{job_id}"
RECENT_LIMIT = 50
#: The most values one completion answer may hold (MCP's limit).
MAX_COMPLETIONS = 100


def _json(model: BaseModel | list[Any]) -> str:
    if isinstance(model, BaseModel):
        return model.model_dump_json(indent=2)
    return json.dumps(model, indent=2)


PROVIDERS_URI = "imagegen://providers"
MODELS_URI = "imagegen://models"
#: The resources whose content follows the catalog (they change when a reload changes the models).
CATALOG_URIS = (PROVIDERS_URI, MODELS_URI)


def add_resources(server: MCPServer[Any], service: ImageService, runtime: Runtime) -> None:
    @server.resource(
        PROVIDERS_URI,
        name="providers",
        title="Provider status",
        description="Every provider: available or not, why, the steps that fix it, priority and default model.",
        mime_type="application/json",
    )
    def providers_resource() -> str:
        return _json(listings.providers(service))

    @server.resource(
        PROVIDER_TEMPLATE,
        name="provider",
        title="One provider's status",
        description="One provider's availability, reason, fix steps and default model, by provider name.",
        mime_type="application/json",
    )
    def provider_resource(name: str) -> str:
        for status in listings.providers(service).providers:
            if status.name == name:
                return _json(status)
        raise ResourceError(f"Unknown provider {name!r}; known: {', '.join(service.catalog.providers)}")

    @server.resource(
        MODELS_URI,
        name="models",
        title="Model catalog",
        description="Every model by provider, with its id, capabilities, default flag and availability.",
        mime_type="application/json",
    )
    def models_resource() -> str:
        return _json(listings.models(service, None))

    @server.resource(
        IMAGE_TEMPLATE,
        name="image",
        title="A generated image (full resolution)",
        description="The full-resolution PNG of a generated image, by the id in its generate_image result.",
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
        title="Recent generations",
        description="The last 50 generations (kept across restarts), newest first, as generate_image returned them.",
        mime_type="application/json",
    )
    async def recent_resource() -> str:
        generations = await runtime.history.recent_generations(RECENT_LIMIT)
        return _json([generation.job.result for generation in generations if generation.job.result is not None])

    @server.resource(
        GENERATION_TEMPLATE,
        name="generation",
        title="One generation",
        description="A finished generation by its job id: the result as generate_image returned it, or its error.",
        mime_type="application/json",
    )
    async def generation_resource(job_id: str) -> str:
        view = await _view(runtime, job_id)
        if isinstance(view, Done):
            return view.output.model_dump_json(indent=2)
        if isinstance(view, Ended):
            return json.dumps({"error": view.error.model_dump(mode="json")}, indent=2)
        raise ResourceError(f"Job {job_id} has not finished yet ({view.status}); see imagegen://jobs/{job_id}")

    @server.resource(
        JOB_TEMPLATE,
        name="job",
        title="One job's state",
        description="A generation job's status, progress and times, by its id.",
        mime_type="application/json",
    )
    async def job_resource(job_id: str) -> str:
        try:
            return _json(await runtime.jobs.info(job_id))
        except ImageGenError as error:
            raise ResourceError(error.message) from None

    @server.completion()  # type: ignore[no-untyped-call, untyped-decorator]
    async def complete(
        ref: PromptReference | ResourceTemplateReference,
        argument: CompletionArgument,
        context: CompletionContext | None,
    ) -> Completion | None:
        if isinstance(ref, PromptReference):
            values = complete_prompt_argument(service, ref.name, argument.name, argument.value)
        elif ref.uri == PROVIDER_TEMPLATE and argument.name == "name":
            values = [name for name in service.catalog.providers if name.startswith(argument.value)]
        elif ref.uri == IMAGE_TEMPLATE and argument.name == "image_id":
            values = service.store.recent_ids(argument.value, MAX_COMPLETIONS + 1)
        elif ref.uri in (GENERATION_TEMPLATE, JOB_TEMPLATE) and argument.name == "job_id":
            jobs = await runtime.history.recent_jobs(MAX_COMPLETIONS + 1)
            values = [job.id for job in jobs if job.id.startswith(argument.value)]
        else:
            return None
        return Completion(values=values[:MAX_COMPLETIONS], total=len(values), has_more=len(values) > MAX_COMPLETIONS)


async def _view(runtime: Runtime, job_id: str) -> JobView:
    try:
        return await runtime.jobs.view(job_id)
    except ImageGenError as error:
        raise ResourceError(error.message) from None
