"""Every failure an agent can see, as one exception hierarchy with a structured payload.

Each error carries a stable ``code``, a message written for the model that will read it, the steps a person
can follow to fix it (``remediation``), whether trying again may help (``retryable``) and, once the service
has run a plan, every candidate it tried (``attempts``). Whether an error lets the service move on to the
next candidate is decided here, in one place (:attr:`ImageGenError.allows_fallback`).
"""

from __future__ import annotations

import errno
import logging
import secrets
from collections.abc import Iterable, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

logger = logging.getLogger(__name__)

#: The setting that moves the output folder (named in storage errors).
OUTPUT_DIR_VARIABLE = "IMAGEGEN_OUTPUT_DIR"


class ErrorCode(StrEnum):
    INVALID_REQUEST = "invalid_request"
    MODEL_NOT_FOUND = "model_not_found"
    MODEL_RETIRED = "model_retired"
    PROVIDER_NOT_FOUND = "provider_not_found"
    PROVIDER_UNAVAILABLE = "provider_unavailable"
    NO_PROVIDER_AVAILABLE = "no_provider_available"
    AUTHENTICATION_FAILED = "authentication_failed"
    RATE_LIMITED = "rate_limited"
    CONTENT_BLOCKED = "content_blocked"
    PROVIDER_TIMEOUT = "provider_timeout"
    PROVIDER_ERROR = "provider_error"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"
    NOT_FOUND = "not_found"
    BUDGET_EXCEEDED = "budget_exceeded"
    OUT_OF_MEMORY = "out_of_memory"
    STORAGE_ERROR = "storage_error"
    INTERNAL_ERROR = "internal_error"


AttemptOutcome = Literal["succeeded", "failed", "skipped"]


class Attempt(BaseModel):
    """One candidate of a plan and what became of it."""

    model_config = ConfigDict(frozen=True)

    provider: str
    model: str
    outcome: AttemptOutcome
    code: ErrorCode | None = None
    reason: str | None = None
    elapsed_ms: int | None = None

    def describe(self) -> str:
        """``provider:model outcome (reason)``, for texts."""
        return f"{self.provider}:{self.model} {self.outcome}" + (f" ({self.reason})" if self.reason else "")


class ErrorPayload(BaseModel):
    """The structured content of an error tool result."""

    code: ErrorCode
    message: str
    provider: str | None = None
    model: str | None = None
    remediation: list[str] = Field(default_factory=list)
    retryable: bool = False
    retry_after_s: float | None = None
    attempts: list[Attempt] = Field(default_factory=list)
    details: dict[str, Any] = Field(default_factory=dict)


class ImageGenError(Exception):
    """Base of every error that reaches an agent as a structured tool result."""

    #: Set per class; an error that stands for another (:class:`PlanFailedError`) takes that one's.
    code: ErrorCode = ErrorCode.INTERNAL_ERROR
    default_retryable: ClassVar[bool] = False
    #: Whether the service may try the next candidate after this error: unavailable, authentication rejected,
    #: rate limited, timeout, out of memory, and connection or server failures; never invalid input or a block.
    triggers_fallback: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        model: str | None = None,
        remediation: Iterable[str] = (),
        retryable: bool | None = None,
        retry_after_s: float | None = None,
        attempts: Sequence[Attempt] = (),
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.model = model
        self.remediation = list(remediation)
        self.retryable = self.default_retryable if retryable is None else retryable
        self.retry_after_s = retry_after_s
        self.attempts = tuple(attempts)
        self.details = dict(details or {})

    @property
    def allows_fallback(self) -> bool:
        return self.triggers_fallback

    def to_payload(self) -> ErrorPayload:
        return ErrorPayload(
            code=self.code,
            message=self.message,
            provider=self.provider,
            model=self.model,
            remediation=self.remediation,
            retryable=self.retryable,
            retry_after_s=self.retry_after_s,
            attempts=list(self.attempts),
            details=self.details,
        )


class ConfigError(Exception):
    """A setting has an invalid value; raised at start so the server never runs misconfigured."""


class CatalogError(Exception):
    """The registered providers contradict each other (a duplicated name or model key)."""


class InvalidRequestError(ImageGenError):
    code = ErrorCode.INVALID_REQUEST


class ModelNotFoundError(ImageGenError):
    code = ErrorCode.MODEL_NOT_FOUND


class ModelRetiredError(ImageGenError):
    """The vendor answered that a catalog entry's model id does not exist (any more). Another provider may
    serve the request meanwhile; the fix is to point the entry at a current id."""

    code = ErrorCode.MODEL_RETIRED
    triggers_fallback = True


class ProviderNotFoundError(ImageGenError):
    code = ErrorCode.PROVIDER_NOT_FOUND


class ProviderUnavailableError(ImageGenError):
    code = ErrorCode.PROVIDER_UNAVAILABLE
    triggers_fallback = True


class NoProviderAvailableError(ImageGenError):
    code = ErrorCode.NO_PROVIDER_AVAILABLE


class AuthenticationError(ImageGenError):
    code = ErrorCode.AUTHENTICATION_FAILED
    triggers_fallback = True


class RateLimitedError(ImageGenError):
    code = ErrorCode.RATE_LIMITED
    default_retryable = True
    triggers_fallback = True


class ContentBlockedError(ImageGenError):
    code = ErrorCode.CONTENT_BLOCKED


class ProviderTimeoutError(ImageGenError):
    code = ErrorCode.PROVIDER_TIMEOUT
    default_retryable = True
    triggers_fallback = True


class ProviderError(ImageGenError):
    """A provider failed. Only retryable failures (connection, 5xx) let the service fall back."""

    code = ErrorCode.PROVIDER_ERROR

    @property
    def allows_fallback(self) -> bool:
        return self.retryable


class GenerationCancelledError(ImageGenError):
    code = ErrorCode.CANCELLED


class JobInterruptedError(ImageGenError):
    """The server stopped (or was killed) while the job ran; its saved images stay in the history."""

    code = ErrorCode.INTERRUPTED
    default_retryable = True


class NotFoundError(ImageGenError):
    """No job or image has this id."""

    code = ErrorCode.NOT_FOUND


class BudgetExceededError(ImageGenError):
    """A paid generation would pass IMAGEGEN_DAILY_BUDGET_USD; another paid provider is not tried instead."""

    code = ErrorCode.BUDGET_EXCEEDED


class OutOfMemoryError(ImageGenError):
    code = ErrorCode.OUT_OF_MEMORY
    default_retryable = True
    triggers_fallback = True


class StorageError(ImageGenError):
    """The images could not be saved in the output folder (none of the call's images is kept)."""

    code = ErrorCode.STORAGE_ERROR


class InternalError(ImageGenError):
    code = ErrorCode.INTERNAL_ERROR


def internal_error(what: str, exc: BaseException) -> InternalError:
    """An error of this server's own (a bug): logged with its traceback under a request id that the agent's
    error names, so that the log line can be found."""
    request_id = secrets.token_hex(4)
    logger.error("%s [request %s]", what, request_id, exc_info=exc)
    return InternalError(
        f"{what}; this is a bug of the server, logged on its stderr as request {request_id}.",
        remediation=[f"Look for 'request {request_id}' in the server log (stderr) and report it with that entry"],
        retryable=True,
        details={"request_id": request_id},
    )


def storage_error(folder: Path, exc: OSError) -> StorageError:
    """What the output folder refused, with the folder, the system's reason and how to fix it."""
    reason = exc.strerror or type(exc).__name__
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        steps = [
            f"Free space on the disk that holds {folder}",
            f"Or set {OUTPUT_DIR_VARIABLE} to a folder on another disk",
        ]
    else:
        steps = [
            f"Make {folder} a folder this server's user can write to",
            f"Or set {OUTPUT_DIR_VARIABLE} to one, in the server's environment (the 'env' block of the MCP client "
            "config)",
        ]
    return StorageError(
        f"The images could not be saved in {folder}: {reason}; none of this call's images was kept.",
        remediation=steps,
        retryable=exc.errno in (errno.ENOSPC, errno.EDQUOT),
        details={"folder": str(folder), "errno": errno.errorcode.get(exc.errno or 0), "variable": OUTPUT_DIR_VARIABLE},
    )


class PlanFailedError(ImageGenError):
    """No candidate of a plan produced images: the error that decided it (the last failure), with every
    attempt in order and the remediation of every failure. Built once, when the plan ends; the failures
    themselves are never changed (a provider may raise the same instance again)."""

    def __init__(self, failures: Sequence[ImageGenError], attempts: Sequence[Attempt], *, provider: str, model: str):
        deciding = failures[-1]
        tried = [f"{attempt.provider}:{attempt.model}" for attempt in attempts if attempt.outcome == "failed"]
        message = deciding.message if len(tried) < 2 else f"{deciding.message} (tried {', '.join(tried)})"
        super().__init__(
            message,
            provider=deciding.provider or provider,
            model=deciding.model or model,
            remediation=dict.fromkeys(step for failure in reversed(failures) for step in failure.remediation),
            retryable=deciding.retryable,
            retry_after_s=deciding.retry_after_s,
            attempts=attempts,
            details=deciding.details,
        )
        self.code = deciding.code
        self.failures = tuple(failures)


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every secret (of 4 characters or more) that occurs in ``text``."""
    for secret in secrets:
        if len(secret) >= 4 and secret in text:
            text = text.replace(secret, "***")
    return text
