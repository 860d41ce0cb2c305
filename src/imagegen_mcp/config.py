"""Settings from the environment (and an optional TOML file).

This module is the only reader of ``os.environ``. It takes one snapshot; the core settings are parsed from
it here, and each provider parses its own typed settings from the same snapshot through
:meth:`Settings.provider_settings`, so adding a provider never touches this file. An invalid value raises
:class:`~imagegen_mcp.errors.ConfigError` naming the variable and the allowed values.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Self, TypeVar

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, ValidationError, field_validator

from imagegen_mcp.config_file import CONFIG_FILE_VARIABLE, ConfigFile, ModelEntry, read_config_file
from imagegen_mcp.errors import ConfigError

FallbackMode = Literal["auto", "strict"]
PreviewFormat = Literal["webp", "jpeg"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]

#: Environment variables whose values are never shown anywhere (logs, errors, results, resources).
_SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD)$")


def default_config_file() -> Path:
    """Read when neither ``--config`` nor IMAGEGEN_CONFIG names a file, if it exists."""
    return platformdirs.user_config_path("imagegen-mcp", appauthor=False) / "config.toml"


def default_output_dir() -> Path:
    """The platform's user data folder: never the working directory, which differs per client."""
    return platformdirs.user_data_path("imagegen-mcp", appauthor=False) / "images"


class EnvSettings(BaseModel):
    """Typed settings whose fields are read from environment variables named by their aliases."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Self:
        data: dict[str, str] = {}
        for name, field in cls.model_fields.items():
            variable = field.alias or name
            value = environ.get(variable, "").strip()
            if value:
                data[variable] = value
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(_describe(exc, cls)) from None


def _describe(exc: ValidationError, cls: type[EnvSettings]) -> str:
    lines = []
    for error in exc.errors(include_url=False, include_input=False):
        variable = str(error["loc"][0]) if error["loc"] else cls.__name__
        message = error["msg"].removeprefix("Value error, ")
        lines.append(f"{variable}: {message}")
    return "Invalid configuration:\n  " + "\n  ".join(lines)


_T = TypeVar("_T", bound=EnvSettings)


def _split_list(value: Any) -> Any:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


class Settings(EnvSettings):
    """The server's own settings. Provider settings live with their providers."""

    default_provider: str | None = Field(None, alias="IMAGEGEN_DEFAULT_PROVIDER")
    default_model: str | None = Field(None, alias="IMAGEGEN_DEFAULT_MODEL")
    provider_order: tuple[str, ...] = Field((), alias="IMAGEGEN_PROVIDER_ORDER")
    fallback: FallbackMode = Field("auto", alias="IMAGEGEN_FALLBACK")
    output_dir: Path = Field(default_factory=default_output_dir, alias="IMAGEGEN_OUTPUT_DIR")
    preview_max_px: int = Field(384, ge=64, le=2048, alias="IMAGEGEN_PREVIEW_MAX_PX")
    preview_format: PreviewFormat = Field("webp", alias="IMAGEGEN_PREVIEW_FORMAT")
    request_timeout_s: float = Field(120.0, gt=0, le=3600, alias="IMAGEGEN_TIMEOUT_S")
    #: How long generate_image and get_job wait for a job before answering with its handle.
    wait_s: float = Field(40.0, ge=0, le=300, alias="IMAGEGEN_WAIT_S")
    db_path: Path | None = Field(None, alias="IMAGEGEN_DB")
    daily_budget_usd: float | None = Field(None, ge=0, alias="IMAGEGEN_DAILY_BUDGET_USD")
    #: Folders whose images an edit may read by path, besides the output folder.
    input_dirs: tuple[Path, ...] = Field((), alias="IMAGEGEN_INPUT_DIRS")
    max_input_mb: float = Field(20.0, gt=0, le=1024, alias="IMAGEGEN_MAX_INPUT_MB")
    allow_url_inputs: bool = Field(False, alias="IMAGEGEN_ALLOW_URL_INPUTS")
    auth_token: SecretStr | None = Field(None, alias="IMAGEGEN_AUTH_TOKEN")
    log_level: LogLevel = Field("INFO", alias="IMAGEGEN_LOG_LEVEL")
    #: ``provider:key=vendor id`` pairs: catalog entries pointed at another vendor model id (a retired one's
    #: successor, say) without a new release.
    model_ids: dict[str, str] = Field(default_factory=dict, alias="IMAGEGEN_MODEL_IDS")

    _environ: Mapping[str, str] = PrivateAttr(default_factory=dict)
    _file: ConfigFile | None = PrivateAttr(default=None)
    #: What :meth:`load` was given, for :meth:`reread` (``None``: not loaded, nothing to read again).
    _source: tuple[Mapping[str, str] | None, Path | None] | None = PrivateAttr(default=None)

    @field_validator("provider_order", mode="before")
    @classmethod
    def _parse_order(cls, value: Any) -> Any:
        return _split_list(value)

    @field_validator("input_dirs", mode="before")
    @classmethod
    def _parse_paths(cls, value: Any) -> Any:
        """A path list, separated as the platform's PATH is (``:``, or ``;`` on Windows)."""
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(os.pathsep) if part.strip())
        return value

    @field_validator("input_dirs", mode="after")
    @classmethod
    def _absolute_dirs(cls, value: tuple[Path, ...]) -> tuple[Path, ...]:
        relative = [path for path in value if not path.expanduser().is_absolute()]
        if relative:
            raise ValueError(f"folders must be absolute paths: {', '.join(map(str, relative))}")
        return tuple(path.expanduser().resolve() for path in value)

    @field_validator("model_ids", mode="before")
    @classmethod
    def _parse_model_ids(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        pairs: dict[str, str] = {}
        for item in _split_list(value):
            model, equals, vendor_id = item.partition("=")
            if not equals or ":" not in model or not vendor_id.strip():
                raise ValueError(f"{item!r} is not 'provider:key=vendor model id'")
            pairs[model.strip()] = vendor_id.strip()
        return pairs

    @field_validator("log_level", "fallback", "preview_format", mode="before")
    @classmethod
    def _normalise_case(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        return value.upper() if value.lower() in {"debug", "info", "warning", "error"} else value.lower()

    @field_validator("output_dir", "db_path", mode="after")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        return value.expanduser().resolve() if value is not None else None

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, config_file: Path | None = None) -> Settings:
        """Read settings: the TOML file's keys (environment variable names) first, the environment over it.

        The file is ``config_file``, else IMAGEGEN_CONFIG's, else (for the process's own environment only, so
        that an explicit ``environ`` stays hermetic) :func:`default_config_file` when it exists.
        """
        env = dict(os.environ if environ is None else environ)
        path = config_file or (Path(env[CONFIG_FILE_VARIABLE]) if env.get(CONFIG_FILE_VARIABLE) else None)
        if path is None and environ is None and default_config_file().is_file():
            path = default_config_file()
        file = read_config_file(path.expanduser()) if path else None
        merged = {**file.settings, **env} if file else env
        settings = cls.from_environ(merged)
        settings._environ = merged
        settings._file = file
        settings._source = (None if environ is None else dict(environ), config_file)
        return settings

    def reread(self) -> Settings:
        """The settings as :meth:`load` would give them now, from the same sources (the config file read again:
        a SIGHUP reload)."""
        return self if self._source is None else Settings.load(*self._source)

    @property
    def config_file(self) -> ConfigFile | None:
        return self._file

    def model_entries(self, provider: str) -> tuple[ModelEntry, ...]:
        """The config file's ``[[models.<provider>]]`` entries (the provider validates them)."""
        return self._file.models.get(provider, ()) if self._file else ()

    def provider_table(self, provider: str) -> Mapping[str, Any]:
        """The config file's ``[providers.<provider>]`` table."""
        return self._file.providers.get(provider, {}) if self._file else {}

    def model_ids_of(self, provider: str) -> dict[str, str]:
        """The vendor model ids ``IMAGEGEN_MODEL_IDS`` sets for ``provider``'s models, by model key."""
        return {
            model.partition(":")[2]: vendor_id
            for model, vendor_id in self.model_ids.items()
            if model.partition(":")[0] == provider
        }

    def provider_settings(self, settings_type: type[_T]) -> _T:
        """Parse a provider's own settings from the same snapshot the core settings came from."""
        return settings_type.from_environ(self._environ)

    def secrets(self) -> list[str]:
        """Every configured secret value, longest first, for redaction."""
        values = {value for name, value in self._environ.items() if _SECRET_NAME.search(name) and value}
        return sorted(values, key=len, reverse=True)
