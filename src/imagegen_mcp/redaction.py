"""Secrets out of everything the server says or writes: one :class:`Redactor` that results, errors, attempts,
provenance, the history and the logs all pass through (the configured secret values, replaced by ``***``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from imagegen_mcp.errors import ErrorPayload, ImageGenError, redact

_T = TypeVar("_T")


class Redactor:
    def __init__(self, secrets: Iterable[str]) -> None:
        #: Longest first, so that a secret containing another is replaced whole.
        self.secrets = sorted({secret for secret in secrets if len(secret) >= 4}, key=len, reverse=True)

    def text(self, text: str) -> str:
        return redact(text, self.secrets) if self.secrets else text

    def value(self, value: _T) -> _T:
        """``value`` (strings, and lists, tuples and mappings of them, to any depth) with every secret replaced."""
        if not self.secrets:
            return value
        return self._clean(value)  # type: ignore[no-any-return]

    def _clean(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {self._clean(key): self._clean(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self._clean(item) for item in value)
        return value

    def payload(self, error: ImageGenError) -> ErrorPayload:
        """The structured form of ``error``, scrubbed."""
        return ErrorPayload.model_validate(self.value(error.to_payload().model_dump(mode="json")))
