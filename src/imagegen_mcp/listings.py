"""The provider and model listings, each from one availability snapshot, as output models and short texts.

Shared by the MCP tools and resources and by the CLI (which imports nothing of the protocol).
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, Field

from imagegen_mcp.providers.base import Availability, ModelCapabilities, ModelConfig
from imagegen_mcp.resolver import ProviderState, find_provider
from imagegen_mcp.service import ImageService


class ProviderStatus(BaseModel):
    name: str
    display_name: str
    description: str
    available: bool
    reason: str | None
    remediation: list[str]
    priority: int
    default_model: str
    model_count: int


class NextGeneration(BaseModel):
    provider: str | None
    model: str | None
    why: str


class ProvidersOutput(BaseModel):
    providers: list[ProviderStatus]
    default_provider: str | None = Field(description="IMAGEGEN_DEFAULT_PROVIDER, or null for 'first in order'.")
    default_model: str | None
    fallback_mode: str
    effective_order: list[str]
    next_generation: NextGeneration = Field(description="What a plain generate_image would use right now.")


class ModelInfo(BaseModel):
    id: str
    key: str
    display_name: str
    description: str
    capabilities: ModelCapabilities
    default: bool
    available: bool
    reason: str | None = Field(description="Why this model cannot run now, when it cannot.")


class ProviderModels(BaseModel):
    provider: str
    available: bool
    reason: str | None
    models: list[ModelInfo]


class ModelsOutput(BaseModel):
    providers: list[ProviderModels]


def providers(service: ImageService, states: Sequence[ProviderState] | None = None) -> ProvidersOutput:
    """Every provider's status; ``states`` is the snapshot to report (a new one by default)."""
    states = service.catalog.states() if states is None else states
    statuses = []
    for state in states:
        provider = service.catalog.providers[state.name]
        availability = state.availability
        statuses.append(
            ProviderStatus(
                name=state.name,
                display_name=provider.info.display_name,
                description=provider.info.description,
                available=availability.met,
                reason=availability.reason,
                remediation=list(availability.steps),
                priority=provider.info.priority,
                default_model=f"{state.name}:{provider.info.default_model}",
                model_count=len(provider.models),
            )
        )
    candidate = service.next_candidate(states)
    settings = service.settings
    return ProvidersOutput(
        providers=statuses,
        default_provider=settings.default_provider,
        default_model=settings.default_model,
        fallback_mode=settings.fallback,
        effective_order=service.effective_order(states),
        next_generation=NextGeneration(
            provider=candidate.provider if candidate else None,
            model=candidate.id if candidate else None,
            why=candidate.why if candidate else "no provider is available; see each provider's remediation",
        ),
    )


def providers_text(output: ProvidersOutput) -> str:
    lines = []
    for status in output.providers:
        state = "available" if status.available else f"unavailable: {status.reason}"
        lines.append(f"{status.name} ({status.display_name}): {state}; default {status.default_model}")
        lines += [f"  fix: {step}" for step in status.remediation]
    lines.append(f"Order: {', '.join(output.effective_order)}; fallback {output.fallback_mode}")
    next_model = output.next_generation.model or "none"
    lines.append(f"A plain generate_image now uses: {next_model} ({output.next_generation.why})")
    return "\n".join(lines)


def models(service: ImageService, provider_filter: str | None = None) -> ModelsOutput:
    states: Sequence[ProviderState] = service.catalog.states()
    if provider_filter is not None:
        states = [find_provider(states, provider_filter)]
    groups = []
    for state in states:
        provider = service.catalog.providers[state.name]
        groups.append(
            ProviderModels(
                provider=state.name,
                available=state.availability.met,
                reason=state.availability.reason,
                models=[
                    model_info(state, config, state.availability.model(config.key))
                    for config in provider.models.values()
                ],
            )
        )
    return ModelsOutput(providers=groups)


def model_info(state: ProviderState, config: ModelConfig, availability: Availability) -> ModelInfo:
    return ModelInfo(
        id=f"{state.name}:{config.key}",
        key=config.key,
        display_name=config.display_name,
        description=config.description,
        capabilities=config.capabilities(),
        default=config.key == state.default_model,
        available=availability.met,
        reason=availability.reason,
    )


def models_text(output: ModelsOutput) -> str:
    lines = []
    for group in output.providers:
        lines.append(f"{group.provider}: {'available' if group.available else 'unavailable: ' + str(group.reason)}")
        for model in group.models:
            caps = model.capabilities
            steps = f", {caps.default_steps} steps" if caps.default_steps else ""
            default = " [default]" if model.default else ""
            missing = f" - unavailable: {model.reason}" if model.reason and group.available else ""
            lines.append(f"  {model.id}{default}: {model.display_name} (max {caps.max_resolution}px{steps}){missing}")
    return "\n".join(lines)
