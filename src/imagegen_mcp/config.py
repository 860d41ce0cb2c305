"""Settings from the environment (and an optional TOML file).

This module is the only reader of ``os.environ``. It takes one snapshot; the core settings are parsed from
it here, and each provider parses its own typed settings from the same snapshot through
:meth:`Settings.provider_settings`, so adding a provider never touches this file. An invalid value raises
:class:`~imagegen_mcp.errors.ConfigError` naming the variable and the allowed values.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Self, TypeVar

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, ValidationError, field_validator

from imagegen_mcp.errors import ConfigError

FallbackMode = Literal["auto", "strict"]
PreviewFormat = Literal["webp", "jpeg"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]

#: Environment variables whose values are never shown anywhere (logs, errors, results, resources).
_SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD)$")
CONFIG_FILE_VARIABLE = "IMAGEGEN_CONFIG"


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
    auth_token: SecretStr | None = Field(None, alias="IMAGEGEN_AUTH_TOKEN")
    log_level: LogLevel = Field("INFO", alias="IMAGEGEN_LOG_LEVEL")
    #: ``provider:key=vendor id`` pairs: catalog entries pointed at another vendor model id (a retired one's
    #: successor, say) without a new release.
    model_ids: dict[str, str] = Field(default_factory=dict, alias="IMAGEGEN_MODEL_IDS")

    _environ: Mapping[str, str] = PrivateAttr(default_factory=dict)

    @field_validator("provider_order", mode="before")
    @classmethod
    def _parse_order(cls, value: Any) -> Any:
        return _split_list(value)

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

    @field_validator("output_dir", mode="after")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, config_file: Path | None = None) -> Settings:
        """Read settings: the TOML file's keys (environment variable names) first, the environment over it."""
        env = dict(os.environ if environ is None else environ)
        path = config_file or (Path(env[CONFIG_FILE_VARIABLE]) if env.get(CONFIG_FILE_VARIABLE) else None)
        merged = {**_read_toml(path), **env} if path else env
        settings = cls.from_environ(merged)
        settings._environ = merged
        return settings

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


def _read_toml(path: Path) -> dict[str, str]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{CONFIG_FILE_VARIABLE}: cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{CONFIG_FILE_VARIABLE}: {path} is not valid TOML: {exc}") from None
    bad = [key for key, value in data.items() if isinstance(value, dict | list)]
    if bad:
        raise ConfigError(
            f"{CONFIG_FILE_VARIABLE}: {path} must hold flat KEY = value pairs named like the environment "
            f"variables; found tables or lists at {', '.join(bad)}"
        )
    return {key: str(value).lower() if isinstance(value, bool) else str(value) for key, value in data.items()}
