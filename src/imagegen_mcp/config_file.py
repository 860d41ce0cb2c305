"""The TOML configuration file: settings named like the environment variables, and the user's models.

    IMAGEGEN_FALLBACK = "auto"          # any setting, as the environment variable of the same name

    [[models.runware]]                  # one entry per model, validated by that provider's model config
    key = "juggernaut_x"
    air = "rundiffusion:133@1"

    [[models.runware]]                  # an entry with a built-in's key changes that built-in's defaults
    key = "juggernaut_pro"
    default_steps = 25

    [providers.runware]
    default_model = "juggernaut_x"

This module reads and shapes the file; each provider validates its own entries
(:meth:`imagegen_mcp.providers.base.ImageProvider.user_models`). Every problem stops the start with the file,
the table, the entry and the field in one message.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imagegen_mcp.errors import ConfigError

CONFIG_FILE_VARIABLE = "IMAGEGEN_CONFIG"
#: What a ``[providers.<name>]`` table may set.
PROVIDER_KEYS = ("default_model",)


@dataclass(frozen=True)
class ModelEntry:
    """One ``[[models.<provider>]]`` entry: its fields, and where it stands, for error messages."""

    fields: Mapping[str, Any]
    #: e.g. ``/home/me/.config/imagegen-mcp/config.toml: [[models.runware]] entry 2 (key 'juggernaut_x')``.
    where: str

    @property
    def key(self) -> str:
        return str(self.fields.get("key", ""))


@dataclass(frozen=True)
class ConfigFile:
    path: Path
    #: The flat ``KEY = value`` settings, as strings the way the environment gives them.
    settings: Mapping[str, str] = field(default_factory=dict)
    models: Mapping[str, tuple[ModelEntry, ...]] = field(default_factory=dict)
    providers: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


def read_config_file(path: Path) -> ConfigFile:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{CONFIG_FILE_VARIABLE}: cannot read {path}: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {_toml_problem(text, exc)}") from None
    models = data.pop("models", {})
    providers = data.pop("providers", {})
    nested = [key for key, value in data.items() if isinstance(value, dict | list)]
    if nested:
        raise ConfigError(
            f"{path}: {', '.join(nested)}: only the tables [[models.<provider>]] and [providers.<provider>] may "
            "hold tables or lists; settings are flat KEY = value pairs named like the environment variables"
        )
    settings = {key: str(value).lower() if isinstance(value, bool) else str(value) for key, value in data.items()}
    return ConfigFile(path, settings, _models(path, models), _providers(path, providers))


def _toml_problem(text: str, exc: tomllib.TOMLDecodeError) -> str:
    """The parser's message with the table and the field of the line it stopped at, found by reading back
    from that line (tomllib reports only a line and a column)."""
    position = re.search(r"at line (\d+), column \d+", str(exc))
    if position is None:
        return str(exc)
    lines = text.splitlines()[: int(position.group(1))]
    field = re.match(r"\s*([A-Za-z0-9_.\"-]+)\s*=", lines[-1]) if lines else None
    table = next((line.strip() for line in reversed(lines) if re.match(r"\s*\[", line)), "the top level")
    where = f"in {table}" + (f", field {field.group(1)}" if field else "")
    return f'{exc} ({where}; text values need quotes, e.g. key = "value")'


def _models(path: Path, tables: Any) -> dict[str, tuple[ModelEntry, ...]]:
    if not isinstance(tables, dict):
        raise ConfigError(f"{path}: models must be tables [[models.<provider>]], one per model")
    shaped: dict[str, tuple[ModelEntry, ...]] = {}
    for provider, entries in tables.items():
        table = f"[[models.{provider}]]"
        if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
            raise ConfigError(f"{path}: {table} must be a list of tables: write each model as [[models.{provider}]]")
        made = []
        for number, fields in enumerate(entries, start=1):
            key = fields.get("key")
            where = f"{path}: {table} entry {number}" + (f" (key {key!r})" if key else "")
            if not isinstance(key, str) or not key:
                raise ConfigError(f'{where}: key: every model needs a key, e.g. key = "my_model"')
            made.append(ModelEntry(fields, where))
        keys = [entry.key for entry in made]
        twice = sorted({key for key in keys if keys.count(key) > 1})
        if twice:
            raise ConfigError(f"{path}: {table}: key {', '.join(map(repr, twice))} is defined twice")
        shaped[provider] = tuple(made)
    return shaped


def _providers(path: Path, tables: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(tables, dict) or not all(isinstance(table, dict) for table in tables.values()):
        raise ConfigError(f"{path}: providers must be tables [providers.<provider>]")
    for provider, table in tables.items():
        unknown = sorted(set(table) - set(PROVIDER_KEYS))
        if unknown:
            raise ConfigError(
                f"{path}: [providers.{provider}]: {', '.join(unknown)}: unknown; allowed: {', '.join(PROVIDER_KEYS)}"
            )
    return dict(tables)
