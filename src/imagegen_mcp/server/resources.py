"""The resources (provider status, the model catalog, images, recent generations) and the completions of
resource-template arguments."""

from __future__ import annotations

import json
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError
from mcp_types import Completion, CompletionArgument, CompletionContext, PromptReference, ResourceTemplateReference
from pydantic import BaseModel

from imagegen_mcp import listings, results
from imagegen_mcp.server.prompts import complete_prompt_argument
from imagegen_mcp.service import ImageService

PROVIDER_TEMPLATE = "imagegen://providers/{name}"
IMAGE_TEMPLATE = "imagegen://images/{image_id}"
#: The most values one completion answer may hold (MCP's limit).
MAX_COMPLETIONS = 100


def _json(model: BaseModel | list[Any]) -> str:
    if isinstance(model, BaseModel):
        return model.model_dump_json(indent=2)
    return json.dumps(model, indent=2)


def add_resources(server: MCPServer[Any], service: ImageService) -> None:
    @server.resource(
        "imagegen://providers",
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
        "imagegen://models",
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
        title="Recent generations of this server",
        description="The last 50 generations of this server process, newest first, as generate_image returned them.",
        mime_type="application/json",
    )
    def recent_resource() -> str:
        return _json(results.recent(list(service.recent)))

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
        else:
            return None
        return Completion(values=values[:MAX_COMPLETIONS], total=len(values), has_more=len(values) > MAX_COMPLETIONS)
