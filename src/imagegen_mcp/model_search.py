"""``search_models``: the catalogs of providers that have one (Runware's hundreds of thousands of models), searched
for models and LoRAs that no entry configures; a found id works in ``generate_image`` as it is."""

from __future__ import annotations

from pydantic import BaseModel, Field

from imagegen_mcp.errors import InvalidRequestError, ProviderNotFoundError, ProviderUnavailableError
from imagegen_mcp.providers.base import FoundModel, ModelQuery
from imagegen_mcp.service import ImageService


class SearchModelsArgs(ModelQuery):
    provider: str | None = Field(None, description="Only this provider's catalog (default: every one that has one).")


class SearchModelsOutput(BaseModel):
    models: list[FoundModel]
    #: The providers whose catalogs were searched.
    searched: list[str]


async def search(service: ImageService, args: SearchModelsArgs) -> SearchModelsOutput:
    """Each searchable provider's answer, in catalog order; an unavailable one is an error naming its fix."""
    providers = service.catalog.providers
    if args.provider is not None and args.provider not in providers:
        raise ProviderNotFoundError(
            f"Unknown provider {args.provider!r}; known: {', '.join(providers)}.",
            remediation=["Call list_providers to see every provider"],
        )
    names = [args.provider] if args.provider else [name for name, p in providers.items() if p.info.searchable]
    unsearchable = [name for name in names if not providers[name].info.searchable]
    if not names or unsearchable:
        raise InvalidRequestError(
            f"{unsearchable[0] if unsearchable else 'No provider'} has no model catalog to search.",
            remediation=["Call list_models for the configured models"],
        )
    query = ModelQuery.model_validate(args.model_dump(exclude={"provider"}))
    found: list[FoundModel] = []
    for name in names:
        provider = providers[name]
        availability = provider.check()
        if not availability.met:
            raise ProviderUnavailableError(
                f"{name} cannot search its models: {availability.reason}",
                provider=name,
                remediation=availability.steps,
            )
        found.extend((await provider.search_models(query))[: query.limit])
    return SearchModelsOutput(models=found, searched=names)


def search_text(output: SearchModelsOutput) -> str:
    if not output.models:
        return f"No model found in the catalog of {', '.join(output.searched)}."
    lines = [f"{len(output.models)} model(s) found ({', '.join(output.searched)}):"]
    for model in output.models:
        tuned = ", ".join(
            part
            for part in (
                f"{model.default_steps} steps" if model.default_steps else "",
                f"guidance {model.default_guidance:g}" if model.default_guidance is not None else "",
            )
            if part
        )
        extra = f"; {tuned}" if tuned else ""
        trigger = f"; trigger words: {model.trigger_words}" if model.trigger_words else ""
        lines.append(f"- {model.id} [{model.category}, {model.architecture or '?'}] {model.name}{extra}{trigger}")
    lines.append("A checkpoint's id goes in generate_image's model; a LoRA's vendor id in loras[].model.")
    return "\n".join(lines)
