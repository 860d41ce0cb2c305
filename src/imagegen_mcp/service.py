"""Orchestration: resolve a plan, try its candidates, store the images, return the result.

Plain async code with no protocol in it: the MCP layer and the CLI both call :class:`ImageService`. Each
request takes one availability snapshot; planning, skipping and the error that ends a plan all read it.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anyio
import anyio.to_thread

from imagegen_mcp import __version__, resolver
from imagegen_mcp.catalog import Catalog
from imagegen_mcp.config import FallbackMode, Settings
from imagegen_mcp.errors import (
    Attempt,
    ConfigError,
    ErrorCode,
    ImageGenError,
    InternalError,
    NoProviderAvailableError,
    PlanFailedError,
    ProviderTimeoutError,
    ProviderUnavailableError,
)
from imagegen_mcp.providers.base import (
    MAX_SEED,
    GeneratedImage,
    GenerationRequest,
    ImageProvider,
    ModelConfig,
    Progress,
    ProviderResult,
)
from imagegen_mcp.requests import ImageRequest, fit_request
from imagegen_mcp.resolver import Candidate, Plan, ProviderState
from imagegen_mcp.storage import ImageStore, StoredImage

logger = logging.getLogger(__name__)

RECENT_LIMIT = 50


@dataclass(frozen=True)
class SavedImage:
    stored: StoredImage
    seed: int


@dataclass(frozen=True)
class GenerationResult:
    images: tuple[SavedImage, ...]
    provider: str
    model: str
    #: What the caller asked for: a model id, a provider, or the configured default.
    requested: str
    parameters: GenerationRequest
    elapsed_ms: int
    cost: float | None
    attempts: tuple[Attempt, ...]
    adjustments: tuple[str, ...]
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def model_id(self) -> str:
        return f"{self.provider}:{self.model}"

    @property
    def fell_back(self) -> bool:
        return len(self.attempts) > 1


@dataclass(frozen=True)
class _Run:
    """What became of one candidate: its attempt, and its output or its error (neither when skipped)."""

    attempt: Attempt
    output: ProviderResult | None = None
    error: ImageGenError | None = None
    request: GenerationRequest | None = None
    adjustments: tuple[str, ...] = ()


def _describe_request(request: ImageRequest) -> str:
    if request.model:
        return request.model
    if request.provider:
        return f"provider {request.provider}"
    return "default"


class ImageService:
    def __init__(self, settings: Settings, catalog: Catalog, store: ImageStore | None = None) -> None:
        self.settings = settings
        self.catalog = catalog
        self.store = store or ImageStore(settings.output_dir, settings.preview_max_px, settings.preview_format)
        self.recent: deque[GenerationResult] = deque(maxlen=RECENT_LIMIT)
        self._check_settings()

    def _check_settings(self) -> None:
        """Settings that name providers or models must name real ones: fail at start, not per request."""
        states = self.catalog.states()
        checks: list[tuple[str, str, str]] = [
            ("IMAGEGEN_DEFAULT_PROVIDER", "provider", name) for name in filter(None, [self.settings.default_provider])
        ]
        checks += [("IMAGEGEN_PROVIDER_ORDER", "provider", name) for name in self.settings.provider_order]
        checks += [("IMAGEGEN_DEFAULT_MODEL", "model", ref) for ref in filter(None, [self.settings.default_model])]
        for variable, kind, value in checks:
            try:
                if kind == "provider":
                    resolver.find_provider(states, value)
                else:
                    resolver.find_model(states, value)
            except ImageGenError as exc:
                raise ConfigError(f"{variable}: {exc.message}") from None

    # -- planning ---------------------------------------------------------------------------------

    def plan(
        self,
        states: Sequence[ProviderState],
        *,
        model: str | None = None,
        provider: str | None = None,
        mode: FallbackMode | None = None,
    ) -> Plan:
        """The plan for a request, from the availability snapshot ``states``."""
        return resolver.plan(
            states,
            mode=mode or self.settings.fallback,
            model=model,
            provider=provider,
            default_provider=self.settings.default_provider,
            default_model=self.settings.default_model,
            provider_order=self.settings.provider_order,
        )

    def next_candidate(self, states: Sequence[ProviderState]) -> Candidate | None:
        """The candidate a plain ``generate_image`` would run first right now, if any is available."""
        return next((c for c in self.plan(states).candidates if c.availability.met), None)

    def effective_order(self, states: Sequence[ProviderState]) -> list[str]:
        return resolver.effective_order(states, self.settings.provider_order)

    # -- generation -------------------------------------------------------------------------------

    async def generate(self, request: ImageRequest, progress: Progress | None = None) -> GenerationResult:
        progress = progress or Progress()
        started = time.perf_counter()
        states = self.catalog.states()
        plan = self.plan(states, model=request.model, provider=request.provider, mode=request.fallback)
        seed = request.seed if request.seed is not None else secrets.randbelow(MAX_SEED + 1)
        attempts: tuple[Attempt, ...] = ()
        failures: tuple[ImageGenError, ...] = ()
        for index, candidate in enumerate(plan.candidates):
            if failures and candidate.availability.met:
                await progress.update(f"falling back to {candidate.id}")
                logger.warning("falling back to %s (%s) after: %s", candidate.id, candidate.why, failures[-1].message)
            run = await self._try(candidate, request, seed, primary=index == 0, progress=progress)
            attempts = (*attempts, run.attempt)
            if run.output is not None and run.request is not None:
                return await self._finish(run, run.output, run.request, request, attempts, started, progress)
            if run.error is not None:
                failures = (*failures, run.error)
                if not run.error.allows_fallback:
                    break
        raise self._unserved(plan, attempts, failures)

    async def _try(
        self, candidate: Candidate, request: ImageRequest, seed: int, *, primary: bool, progress: Progress
    ) -> _Run:
        """Run one candidate (or skip it when the snapshot says it is unavailable) and report its attempt."""
        if not candidate.availability.met:
            logger.info("skipping %s: %s", candidate.id, candidate.availability.reason)
            return _Run(
                Attempt(
                    provider=candidate.provider,
                    model=candidate.model,
                    outcome="skipped",
                    code=ErrorCode.PROVIDER_UNAVAILABLE,
                    reason=candidate.availability.reason,
                )
            )
        provider = self.catalog.providers[candidate.provider]
        model = provider.models[candidate.model]
        tried_at = time.perf_counter()
        try:
            job, adjustments = fit_request(request, model, candidate.id, primary=primary, seed=seed)
            output = await self._run(provider, candidate, model, job, progress)
        except ImageGenError as error:
            logger.warning("%s failed: %s: %s", candidate.id, error.code.value, error.message)
            attempt = Attempt(
                provider=candidate.provider,
                model=candidate.model,
                outcome="failed",
                code=error.code,
                reason=error.message,
                elapsed_ms=_ms_since(tried_at),
            )
            return _Run(attempt, error=error)
        attempt = Attempt(
            provider=candidate.provider, model=candidate.model, outcome="succeeded", elapsed_ms=_ms_since(tried_at)
        )
        return _Run(attempt, output=output, request=job, adjustments=tuple(adjustments))

    async def _run(
        self,
        provider: ImageProvider[Any],
        candidate: Candidate,
        model: ModelConfig,
        job: GenerationRequest,
        progress: Progress,
    ) -> ProviderResult:
        timeout = provider.timeout_s(self.settings.request_timeout_s)
        try:
            with anyio.fail_after(timeout):
                output = await provider.generate(job, model, progress)
        except TimeoutError:
            raise ProviderTimeoutError(
                f"{candidate.id} did not answer within {timeout:g} s.",
                remediation=["Try again, or raise IMAGEGEN_TIMEOUT_S if the provider is just slow"],
            ) from None
        except ImageGenError:
            raise
        except Exception as exc:
            logger.exception("%s raised an unexpected error", candidate.id)
            raise InternalError(
                f"{candidate.id} failed unexpectedly ({type(exc).__name__}); see the server log.",
                remediation=["Check the server log (stderr) for details"],
            ) from exc
        if not output.images:
            raise InternalError(f"{candidate.id} returned no image.")
        return output

    async def _finish(
        self,
        run: _Run,
        output: ProviderResult,
        job: GenerationRequest,
        request: ImageRequest,
        attempts: tuple[Attempt, ...],
        started: float,
        progress: Progress,
    ) -> GenerationResult:
        """Save the images of the candidate that succeeded and build the result from them."""
        await progress.update("saving images", 0.99)
        provider, model = run.attempt.provider, run.attempt.model
        adjustments = (*run.adjustments, *output.adjustments)
        provenance = {
            "generator": f"imagegen-mcp {__version__}",
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "provider": provider,
            "model": f"{provider}:{model}",
            "requested": _describe_request(request),
            "prompt": job.prompt,
            "negative_prompt": job.negative_prompt,
            "width": job.width,
            "height": job.height,
            "steps": job.steps,
            "guidance_scale": job.guidance_scale,
            "cost_usd": output.cost,
            "adjustments": list(adjustments),
            "attempts": [attempt.model_dump(mode="json", exclude_none=True) for attempt in attempts],
        }
        images = await self._save_all(output.images, provenance)
        result = GenerationResult(
            images=images,
            provider=provider,
            model=model,
            requested=_describe_request(request),
            parameters=job,
            elapsed_ms=_ms_since(started),
            cost=output.cost,
            attempts=attempts,
            adjustments=adjustments,
            details=output.details,
        )
        self.recent.appendleft(result)
        return result

    async def _save_all(
        self, images: Sequence[GeneratedImage], provenance: Mapping[str, Any]
    ) -> tuple[SavedImage, ...]:
        saved: list[SavedImage | None] = [None] * len(images)

        async def save(index: int, image: GeneratedImage) -> None:
            record = {**provenance, "seed": image.seed, "index": index}
            stored = await anyio.to_thread.run_sync(self.store.save, image.data, record)
            saved[index] = SavedImage(stored=stored, seed=image.seed)

        async with anyio.create_task_group() as group:
            for index, image in enumerate(images):
                group.start_soon(save, index, image)
        return tuple(image for image in saved if image is not None)

    def _unserved(
        self,
        plan: Plan,
        attempts: tuple[Attempt, ...],
        failures: tuple[ImageGenError, ...],
    ) -> ImageGenError:
        """The one error for a plan that produced no image, built from the attempts and the snapshot."""
        if failures:
            last = next(attempt for attempt in reversed(attempts) if attempt.outcome == "failed")
            return PlanFailedError(failures, attempts, provider=last.provider, model=f"{last.provider}:{last.model}")
        first = plan.candidates[0]
        if plan.mode == "strict" or len(plan.candidates) == 1:
            return ProviderUnavailableError(
                f"{first.id} is unavailable: {first.availability.reason}.",
                provider=first.provider,
                model=first.id,
                remediation=first.availability.steps,
                attempts=attempts,
            )
        considered = "; ".join(f"{c.id}: {c.availability.reason}" for c in plan.candidates)
        return NoProviderAvailableError(
            f"No image provider is available ({considered}).",
            remediation=dict.fromkeys(step for c in plan.candidates for step in c.availability.steps),
            attempts=attempts,
        )

    async def aclose(self) -> None:
        for provider in self.catalog.providers.values():
            try:
                await provider.aclose()
            except Exception:
                logger.exception("closing %s failed", provider.info.name)
        self.store.close()


def _ms_since(start: float) -> int:
    return round((time.perf_counter() - start) * 1000)
