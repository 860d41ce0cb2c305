"""The listings (providers, models, recent generations) as output models and short texts."""

from __future__ import annotations

from typing import Any

from imagegen_mcp.providers.base import ImageProvider, ModelConfig
from imagegen_mcp.resolver import find_provider
from imagegen_mcp.server.content import (
    ModelInfo,
    ModelsOutput,
    NextGeneration,
    ProviderModels,
    ProvidersOutput,
    ProviderStatus,
    generation_output,
)
from imagegen_mcp.service import ImageService


def providers(service: ImageService) -> ProvidersOutput:
    # One availability snapshot for the whole listing, so its parts cannot disagree.
    states = service.catalog.states()
    statuses = []
    for state in states:
        name, reason = state.name, state.unavailable_reason
        provider = service.catalog.providers[name]
        statuses.append(
            ProviderStatus(
                name=name,
                display_name=provider.info.display_name,
                description=provider.info.description,
                available=reason is None,
                reason=reason,
                remediation=provider.setup_instructions() if reason else [],
                priority=provider.info.priority,
                default_model=f"{name}:{provider.info.default_model}",
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


def models(service: ImageService, provider_filter: str | None) -> ModelsOutput:
    states = service.catalog.states()
    if provider_filter is not None:
        states = [find_provider(states, provider_filter)]
    groups = []
    for state in states:
        name, reason = state.name, state.unavailable_reason
        provider = service.catalog.providers[name]
        groups.append(
            ProviderModels(
                provider=name,
                available=reason is None,
                reason=reason,
                models=[model_info(provider, config, reason) for config in provider.models.values()],
            )
        )
    return ModelsOutput(providers=groups)


def model_info(provider: ImageProvider, config: ModelConfig, provider_reason: str | None) -> ModelInfo:
    reason = provider_reason or provider.model_unavailable_reason(config)
    return ModelInfo(
        id=f"{provider.info.name}:{config.key}",
        key=config.key,
        display_name=config.display_name,
        description=config.description,
        capabilities=config.capabilities(),
        default=config.key == provider.info.default_model,
        available=reason is None,
        reason=reason,
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


def recent(service: ImageService) -> list[dict[str, Any]]:
    return [generation_output(result).model_dump(mode="json") for result in service.recent]
