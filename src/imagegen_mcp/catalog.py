"""The registered providers and their models, aggregated. Providers are found through the
``imagegen_mcp.providers`` entry-point group, so a separate package can add one without editing this one."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from importlib.metadata import entry_points
from typing import Any

from imagegen_mcp.config import Settings
from imagegen_mcp.errors import CatalogError, ConfigError
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
    """Providers by name and models by ``provider:key`` (a bare key works while one provider has it)."""

    def __init__(self, providers: Iterable[ImageProvider[Any]]) -> None:
        self.providers: dict[str, ImageProvider[Any]] = {}
        for provider in sorted(providers, key=lambda p: p.info.name):
            name = provider.info.name
            if name in self.providers:
                raise CatalogError(f"two providers are named {name!r}")
            if provider.info.default_model not in provider.models:
                raise CatalogError(
                    f"provider {name!r} names default model {provider.info.default_model!r}, which it does not define"
                )
            self.providers[name] = provider
        self._check_config_tables()

    def _check_config_tables(self) -> None:
        """Model and provider tables of the config file must name providers that exist."""
        settings = next(iter(self.providers.values())).settings if self.providers else None
        file = settings.config_file if settings is not None else None
        if file is None:
            return
        for table, names in (("[[models.{}]]", file.models), ("[providers.{}]", file.providers)):
            unknown = sorted(set(names) - set(self.providers))
            if unknown:
                raise ConfigError(
                    f"{file.path}: {table.format(unknown[0])}: no provider is named {unknown[0]!r}; the providers are "
                    f"{', '.join(self.providers)}"
                )

    def reload(self, settings: Settings) -> bool:
        """Rebuild every provider's models from ``settings`` (a re-read config file); whether any changed.

        Nothing changes unless every provider accepts the new settings.
        """
        staged = [(provider, provider.models_for(settings)) for provider in self.providers.values()]
        changed = False
        for provider, (models, info) in staged:
            changed = changed or models != provider.models or info != provider.info
            provider.models, provider.info = models, info
        return changed

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
                inputs={key: model.inputs for key, model in provider.models.items()},
            )
            for name, provider in self.providers.items()
        )
