"""Which provider and model serve a request: pure functions of their inputs, no I/O, no globals.

The plan is: the model or provider the request names, else the configured default; then, in ``auto`` mode
only, every other provider with its default model, in the effective order (``provider_order`` first, then
priority, ties broken by name). A candidate carries its availability from the snapshot the plan was made
from: the service skips an unavailable one and says why, so a trace shows every provider considered.
``strict`` never goes past the first candidate. The same inputs always give the same plan, whatever order
the providers were registered in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from imagegen_mcp.config import FallbackMode
from imagegen_mcp.errors import InvalidRequestError, ModelNotFoundError, ProviderNotFoundError
from imagegen_mcp.providers.base import Availability, EditNeeds, ImageInputs, RetiredModel


@dataclass(frozen=True)
class ProviderState:
    """One provider as the resolver sees it, its availability taken in the snapshot."""

    name: str
    priority: int
    default_model: str
    models: tuple[str, ...]
    availability: Availability
    #: Names the vendor retired, each with the model that replaces it.
    retired: Mapping[str, RetiredModel] = field(default_factory=dict, hash=False)
    #: What each model does with input images, by key.
    inputs: Mapping[str, ImageInputs] = field(default_factory=dict, hash=False)

    def refusal(self, key: str, needs: EditNeeds | None) -> str | None:
        """Why model ``key`` cannot serve a request that needs ``needs`` (``None``: a plain generation)."""
        if needs is None:
            return None
        return self.inputs.get(key, ImageInputs()).refusal(needs)


@dataclass(frozen=True)
class Candidate:
    provider: str
    model: str
    #: Why this candidate is in the plan, in words ("requested model", "fallback (order 2)", ...).
    why: str
    #: The availability of this candidate's model in the snapshot the plan was made from.
    availability: Availability
    #: Why none of this provider's models can serve the request (an edit it cannot do), when so.
    unsuitable: str | None = None

    @property
    def id(self) -> str:
        return f"{self.provider}:{self.model}"


@dataclass(frozen=True)
class Plan:
    mode: FallbackMode
    candidates: tuple[Candidate, ...]


def effective_order(states: Sequence[ProviderState], provider_order: Sequence[str] = ()) -> list[str]:
    """Provider names in the order fallback visits them: ``provider_order`` first, then priority, then name."""
    position = {name: index for index, name in enumerate(provider_order)}
    ranked = sorted(states, key=lambda s: (position.get(s.name, len(position)), s.priority, s.name))
    return [state.name for state in ranked]


def find_provider(states: Sequence[ProviderState], name: str) -> ProviderState:
    for state in states:
        if state.name == name:
            return state
    known = sorted(state.name for state in states)
    raise ProviderNotFoundError(
        f"Unknown provider {name!r}. Known providers: {', '.join(known)}.",
        provider=name,
        remediation=["Call list_providers to see every provider and whether it is available"],
        details={"known_providers": known},
    )


def model_ids(states: Sequence[ProviderState]) -> list[str]:
    return [f"{state.name}:{key}" for state in sorted(states, key=lambda s: s.name) for key in state.models]


def split_model_id(ref: str) -> tuple[str, str]:
    """``provider:key`` as its two parts, ``("", key)`` for a bare key. Model keys have no colon, but a vendor id
    standing for a key may (``runware:civitai:133005@782002``): only the first colon separates."""
    provider, colon, key = ref.partition(":")
    return (provider, key) if colon else ("", ref)


def find_model(states: Sequence[ProviderState], ref: str, provider: str | None = None) -> tuple[ProviderState, str]:
    """Look up ``provider:key`` or a bare key; when ``provider`` is given it must own the model."""
    provider_part, key = split_model_id(ref)
    if provider_part:
        owners = [find_provider(states, provider_part)]
    else:
        owners = [state for state in states if key in state.models]
    owners = [state for state in owners if key in state.models]
    if not owners:
        retired = [(state, state.retired[key]) for state in states if key in state.retired]
        if retired and (not provider_part or retired[0][0].name == provider_part):
            state, successor = retired[0]
            replacement = f"{state.name}:{successor.replacement}"
            raise ModelNotFoundError(
                f"Model {ref!r} is no longer served: {successor.note}. Its replacement is {replacement}.",
                model=ref,
                remediation=[f"Use model '{replacement}'", "Call list_models to see every current model"],
                details={"replacement": replacement},
            )
        available = model_ids(states)
        raise ModelNotFoundError(
            f"Unknown model {ref!r}. Available models: {', '.join(available)}.",
            model=ref,
            remediation=["Call list_models to see every model with its capabilities"],
            details={"available_models": available},
        )
    if len(owners) > 1 and not provider_part:
        if provider is not None and provider in {state.name for state in owners}:
            owners = [state for state in owners if state.name == provider]
        else:
            ids = [f"{state.name}:{key}" for state in owners]
            raise ModelNotFoundError(
                f"Model {ref!r} is ambiguous: {', '.join(ids)} all have that key.",
                model=ref,
                remediation=[f"Pass the full id, one of {', '.join(ids)}"],
                details={"candidates": ids},
            )
    owner = owners[0]
    if provider is not None and provider != owner.name:
        find_provider(states, provider)
        raise InvalidRequestError(
            f"Model {ref!r} belongs to provider {owner.name!r}, not {provider!r}.",
            provider=provider,
            model=ref,
            remediation=[f"Drop 'provider', or pass model '{owner.name}:{key}' without it"],
        )
    return owner, key


def _candidate(state: ProviderState, model: str, why: str) -> Candidate:
    return Candidate(state.name, model, why, state.availability.model(model))


def capable_models(states: Sequence[ProviderState], needs: EditNeeds) -> list[str]:
    return [f"{state.name}:{key}" for state in states for key in state.models if state.refusal(key, needs) is None]


def _fitting(state: ProviderState, key: str, why: str, needs: EditNeeds | None) -> Candidate:
    """The candidate of a provider for ``needs``: ``key`` if it can serve it, else the provider's first model
    that can (in the provider's order), else the provider marked unsuitable."""
    refusal = state.refusal(key, needs)
    if refusal is None or needs is None:
        return _candidate(state, key, why)
    for other in state.models:
        if state.refusal(other, needs) is None:
            return _candidate(state, other, f"{why}; {key} {refusal}, {other} can")
    candidate = _candidate(state, key, why)
    return replace(candidate, unsuitable=f"no {state.name} model can {needs.describe()}")


def first_candidate(
    states: Sequence[ProviderState],
    *,
    model: str | None,
    provider: str | None,
    default_provider: str | None,
    default_model: str | None,
    provider_order: Sequence[str],
    needs: EditNeeds | None = None,
) -> Candidate:
    if model is not None:
        state, key = find_model(states, model, provider)
        refusal = state.refusal(key, needs)
        if refusal is not None and needs is not None:
            able = capable_models(states, needs)
            raise InvalidRequestError(
                f"{state.name}:{key} cannot {needs.describe()}: it {refusal}. "
                + (f"Models that can: {', '.join(able)}." if able else "No model here can."),
                model=f"{state.name}:{key}",
                remediation=[f"Use one of {', '.join(able)} as model" if able else "Drop the mask or references"],
                details={"capable_models": able},
            )
        return _candidate(state, key, "requested model")
    if provider is not None:
        state = find_provider(states, provider)
        if default_model is not None:
            default_state, default_key = find_model(states, default_model)
            if default_state.name == state.name:
                return _fitting(state, default_key, "requested provider, configured default model", needs)
        return _fitting(state, state.default_model, "requested provider's default model", needs)
    if default_model is not None:
        state, key = find_model(states, default_model)
        return _fitting(state, key, "configured default model", needs)
    if default_provider is not None:
        state = find_provider(states, default_provider)
        return _fitting(state, state.default_model, "configured default provider", needs)
    if not states:
        raise ProviderNotFoundError("No provider is registered.", remediation=["Reinstall imagegen-mcp"])
    head = find_provider(states, effective_order(states, provider_order)[0])
    return _fitting(head, head.default_model, "first provider in the effective order", needs)


def plan(
    states: Sequence[ProviderState],
    *,
    mode: FallbackMode,
    model: str | None = None,
    provider: str | None = None,
    default_provider: str | None = None,
    default_model: str | None = None,
    provider_order: Sequence[str] = (),
    needs: EditNeeds | None = None,
) -> Plan:
    """``needs``: what an edit uses; candidates are the models that can serve it (see :func:`_fitting`)."""
    first = first_candidate(
        states,
        model=model,
        provider=provider,
        default_provider=default_provider,
        default_model=default_model,
        provider_order=provider_order,
        needs=needs,
    )
    candidates = [first]
    if mode == "auto":
        by_name = {state.name: state for state in states}
        for rank, name in enumerate(effective_order(states, provider_order), start=1):
            if name != first.provider:
                state = by_name[name]
                candidates.append(_fitting(state, state.default_model, f"fallback (order {rank})", needs))
    return Plan(mode=mode, candidates=tuple(candidates))
