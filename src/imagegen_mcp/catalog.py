"""The registered providers and their models, aggregated. Providers are found through the
``imagegen_mcp.providers`` entry-point group, so a separate package can add one without editing this one."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from importlib.metadata import entry_points
from typing import Any

from imagegen_mcp.config import Settings
from imagegen_mcp.errors import CatalogError
from imagegen_mcp.providers.base import ImageProvider
from imagegen_mcp.resolver import ProviderState

ENTRY_POINT_GROUP = "imagegen_mcp.providers"

#: A provider to serve: an instance, or a class the catalog instantiates with the server's settings.
ProviderSpec = ImageProvider[Any] | type[ImageProvider[Any]]


def discover_provider_types() -> list[type[ImageProvider[Any]]]:
    """Every provider class registered in the entry-point group (loading a module imports no SDK)."""
    found = []
    for entry_point in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name):
        provider_type = entry_point.load()
        if not (isinstance(provider_type, type) and issubclass(provider_type, ImageProvider)):
            raise CatalogError(f"entry point {entry_point.name!r} does not name an ImageProvider subclass")
        found.append(provider_type)
    return found


class Catalog:
    """Providers by name and models by ``provider:key``; a bare key works because keys are unique."""

    def __init__(self, providers: Iterable[ImageProvider[Any]]) -> None:
        self.providers: dict[str, ImageProvider[Any]] = {}
        owners: dict[str, str] = {}
        for provider in sorted(providers, key=lambda p: p.info.name):
            name = provider.info.name
            if name in self.providers:
                raise CatalogError(f"two providers are named {name!r}")
            if provider.info.default_model not in provider.models:
                raise CatalogError(
                    f"provider {name!r} names default model {provider.info.default_model!r}, which it does not define"
                )
            for key in provider.models:
                if key in owners:
                    raise CatalogError(
                        f"model key {key!r} is defined by both {owners[key]!r} and {name!r}; model keys must "
                        "be unique across providers"
                    )
                owners[key] = name
            self.providers[name] = provider

    @classmethod
    def load(cls, settings: Settings, providers: Sequence[ProviderSpec] | None = None) -> Catalog:
        """The entry-point providers, or ``providers`` (instances, or classes built with ``settings``)."""
        specs: Sequence[ProviderSpec] = discover_provider_types() if providers is None else providers
        return cls(spec(settings) if isinstance(spec, type) else spec for spec in specs)

    def states(self) -> tuple[ProviderState, ...]:
        """A snapshot of every provider's availability, taken now (cheaply), for one request or listing."""
        return tuple(
            ProviderState(
                name=name,
                priority=provider.info.priority,
                default_model=provider.info.default_model,
                models=tuple(provider.models),
                availability=provider.check(),
                retired=provider.retired_models(),
            )
            for name, provider in self.providers.items()
        )
