"""The provider and model listings, each from one availability snapshot, as output models and short texts.

Shared by the MCP tools and resources and by the CLI (which imports nothing of the protocol).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from pydantic import BaseModel, Field

from imagegen_mcp.history import HistoryStore
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


class ProviderUsage(BaseModel):
    provider: str
    today_usd: float = Field(description="Known cost of today's images (local calendar day).")
    month_usd: float = Field(description="Known cost of this month's images.")
    unknown_cost_today: int = Field(description="Today's generations whose cost the provider did not report.")
    unknown_cost_month: int


class Usage(BaseModel):
    providers: list[ProviderUsage]
    daily_budget_usd: float | None = Field(description="IMAGEGEN_DAILY_BUDGET_USD, when set.")


class ProvidersOutput(BaseModel):
    providers: list[ProviderStatus]
    default_provider: str | None = Field(description="IMAGEGEN_DEFAULT_PROVIDER, or null for 'first in order'.")
    default_model: str | None
    fallback_mode: str
    effective_order: list[str]
    next_generation: NextGeneration = Field(description="What a plain generate_image would use right now.")
    usage: Usage | None = Field(None, description="What was spent, from the history.")


class ModelInfo(BaseModel):
    id: str
    key: str
    display_name: str
    description: str
    vendor_id: str | None = Field(description="The id the vendor knows the model by (IMAGEGEN_MODEL_IDS changes it).")
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


async def usage(history: HistoryStore, budget_usd: float | None, now: datetime | None = None) -> Usage:
    """Spending per provider today and this month (local time), counting unknown costs apart."""
    now = now or datetime.now().astimezone()
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    until = now + timedelta(seconds=1)
    today = await history.spend(midnight, until)
    month = await history.spend(midnight.replace(day=1), until)
    rows = []
    for name in sorted(month):
        day = today.get(name)
        rows.append(
            ProviderUsage(
                provider=name,
                today_usd=round(day.known_cost_usd, 6) if day else 0.0,
                month_usd=round(month[name].known_cost_usd, 6),
                unknown_cost_today=day.unknown_cost_generations if day else 0,
                unknown_cost_month=month[name].unknown_cost_generations,
            )
        )
    return Usage(providers=rows, daily_budget_usd=budget_usd)


def providers(
    service: ImageService, states: Sequence[ProviderState] | None = None, spent: Usage | None = None
) -> ProvidersOutput:
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
        usage=spent,
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
    if output.usage is not None:
        lines += [usage_text(row) for row in output.usage.providers]
        if output.usage.daily_budget_usd is not None:
            lines.append(f"Daily budget: {output.usage.daily_budget_usd:g} USD (IMAGEGEN_DAILY_BUDGET_USD)")
    return "\n".join(lines)


def usage_text(row: ProviderUsage) -> str:
    def unknown(count: int) -> str:
        return f" + {count} of unknown cost" if count else ""

    return (
        f"Spent with {row.provider}: today {row.today_usd:.4f} USD{unknown(row.unknown_cost_today)}, "
        f"this month {row.month_usd:.4f} USD{unknown(row.unknown_cost_month)}"
    )


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
        vendor_id=config.vendor_id,
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
