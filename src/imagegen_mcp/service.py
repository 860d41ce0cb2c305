"""Orchestration: resolve a plan, try its candidates, store the images, return the result.

Plain async code with no protocol in it: the MCP layer and the CLI both call :class:`ImageService`.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import deque
from collections.abc import Sequence
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
    ProviderTimeoutError,
    ProviderUnavailableError,
)
from imagegen_mcp.providers.base import (
    GeneratedImage,
    GenerationRequest,
    ImageProvider,
    ModelConfig,
    Progress,
    ProviderResult,
)
from imagegen_mcp.requests import MAX_SEED, ImageRequest, fit_request
from imagegen_mcp.storage import ImageStore, StoredImage

logger = logging.getLogger(__name__)

RECENT_LIMIT = 50


@dataclass(frozen=True)
class SavedImage:
    stored: StoredImage
    seed: int | None


@dataclass
class GenerationResult:
    images: list[SavedImage]
    provider: str
    model: str
    #: What the caller asked for: a model id, a provider, or the configured default.
    requested: str
    parameters: GenerationRequest
    elapsed_ms: int
    cost: float | None
    attempts: list[Attempt]
    adjustments: list[str]
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def model_id(self) -> str:
        return f"{self.provider}:{self.model}"

    @property
    def fell_back(self) -> bool:
        return len(self.attempts) > 1


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

    # -- listings ---------------------------------------------------------------------------------

    def plan(
        self,
        *,
        model: str | None = None,
        provider: str | None = None,
        mode: FallbackMode | None = None,
        states: Sequence[resolver.ProviderState] | None = None,
    ) -> resolver.Plan:
        """The plan for a request; ``states`` reuses an availability snapshot the caller already took."""
        return resolver.plan(
            self.catalog.states() if states is None else states,
            mode=mode or self.settings.fallback,
            model=model,
            provider=provider,
            default_provider=self.settings.default_provider,
            default_model=self.settings.default_model,
            provider_order=self.settings.provider_order,
        )

    def next_candidate(self, states: Sequence[resolver.ProviderState] | None = None) -> resolver.Candidate | None:
        """The candidate a plain ``generate_image`` would run first right now, if any is available."""
        return next((c for c in self.plan(states=states).candidates if c.unavailable_reason is None), None)

    def effective_order(self, states: Sequence[resolver.ProviderState] | None = None) -> list[str]:
        return resolver.effective_order(
            self.catalog.states() if states is None else states, self.settings.provider_order
        )

    # -- generation -------------------------------------------------------------------------------

    async def generate(self, request: ImageRequest, progress: Progress | None = None) -> GenerationResult:
        progress = progress or Progress()
        started = time.perf_counter()
        plan = self.plan(model=request.model, provider=request.provider, mode=request.fallback)
        seed = request.seed if request.seed is not None else secrets.randbelow(MAX_SEED + 1)
        attempts: list[Attempt] = []
        failures: list[ImageGenError] = []
        for index, candidate in enumerate(plan.candidates):
            unavailable = candidate.unavailable_reason
            if unavailable is not None:
                attempts.append(
                    Attempt(
                        provider=candidate.provider,
                        model=candidate.model,
                        outcome="skipped",
                        code=ErrorCode.PROVIDER_UNAVAILABLE,
                        reason=unavailable,
                    )
                )
                logger.info("skipping %s: %s", candidate.id, unavailable)
                continue
            provider = self.catalog.providers[candidate.provider]
            model = self.catalog.config(candidate.provider, candidate.model)
            job, adjustments = fit_request(request, model, candidate.id, primary=index == 0, seed=seed)
            if attempts:
                await progress.update(f"falling back to {candidate.id}")
                logger.warning("falling back to %s (%s) after: %s", candidate.id, candidate.why, attempts[-1].reason)
            tried_at = time.perf_counter()
            try:
                output = await self._run(provider, candidate, model, job, progress)
            except ImageGenError as error:
                error.provider = error.provider or candidate.provider
                error.model = error.model or candidate.id
                attempts.append(
                    Attempt(
                        provider=candidate.provider,
                        model=candidate.model,
                        outcome="failed",
                        code=error.code,
                        reason=error.message,
                        elapsed_ms=_ms_since(tried_at),
                    )
                )
                logger.warning("%s failed: %s: %s", candidate.id, error.code.value, error.message)
                if not error.allows_fallback:
                    error.attempts = attempts
                    raise
                failures.append(error)
                continue
            attempts.append(
                Attempt(
                    provider=candidate.provider,
                    model=candidate.model,
                    outcome="succeeded",
                    elapsed_ms=_ms_since(tried_at),
                )
            )
            await progress.update("saving images", 0.99)
            result = GenerationResult(
                images=[],
                provider=candidate.provider,
                model=candidate.model,
                requested=_describe_request(request),
                parameters=job,
                elapsed_ms=0,
                cost=output.cost,
                attempts=attempts,
                adjustments=adjustments + output.adjustments,
                details=output.details,
            )
            result.images = await self._save_all(output.images, result)
            result.elapsed_ms = _ms_since(started)
            self.recent.appendleft(result)
            return result
        raise self._exhausted(plan, attempts, failures)

    async def _run(
        self,
        provider: ImageProvider,
        candidate: resolver.Candidate,
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

    async def _save_all(self, images: Sequence[GeneratedImage], result: GenerationResult) -> list[SavedImage]:
        saved: list[SavedImage | None] = [None] * len(images)

        async def save(index: int, image: GeneratedImage) -> None:
            provenance = self._provenance(result, image, index)
            stored = await anyio.to_thread.run_sync(self.store.save, image.data, provenance)
            saved[index] = SavedImage(stored=stored, seed=image.seed)

        async with anyio.create_task_group() as group:
            for index, image in enumerate(images):
                group.start_soon(save, index, image)
        return [image for image in saved if image is not None]

    def _provenance(self, result: GenerationResult, image: GeneratedImage, index: int) -> dict[str, Any]:
        job = result.parameters
        return {
            "generator": f"imagegen-mcp {__version__}",
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "provider": result.provider,
            "model": result.model_id,
            "requested": result.requested,
            "prompt": job.prompt,
            "negative_prompt": job.negative_prompt,
            "width": job.width,
            "height": job.height,
            "steps": job.steps,
            "guidance_scale": job.guidance_scale,
            "seed": image.seed,
            "index": index,
            "cost_usd": result.cost,
            "adjustments": result.adjustments,
            "attempts": [attempt.model_dump(mode="json", exclude_none=True) for attempt in result.attempts],
        }

    def _exhausted(self, plan: resolver.Plan, attempts: list[Attempt], failures: list[ImageGenError]) -> ImageGenError:
        if failures:
            last = failures[-1]
            if len(attempts) > 1:
                last.message = f"{last.message} (tried {', '.join(f'{a.provider}:{a.model}' for a in attempts)})"
            last.remediation = _unique([step for failure in failures for step in failure.remediation])
            last.attempts = attempts
            return last
        if plan.mode == "strict" or len(self.catalog.providers) == 1:
            candidate = plan.candidates[0]
            provider = self.catalog.providers[candidate.provider]
            return ProviderUnavailableError(
                f"{candidate.provider} is unavailable: {candidate.unavailable_reason}.",
                provider=candidate.provider,
                model=candidate.id,
                remediation=provider.setup_instructions(),
                attempts=attempts,
            )
        reasons = "; ".join(f"{name}: {p.unavailable_reason()}" for name, p in self.catalog.providers.items())
        return NoProviderAvailableError(
            f"No image provider is available ({reasons}).",
            remediation=_unique(
                [step for name in self.effective_order() for step in self.catalog.providers[name].setup_instructions()]
            ),
            attempts=attempts,
        )

    async def aclose(self) -> None:
        for provider in self.catalog.providers.values():
            try:
                await provider.aclose()
            except Exception:
                logger.exception("closing %s failed", provider.info.name)


def _ms_since(start: float) -> int:
    return round((time.perf_counter() - start) * 1000)


def _unique(items: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(items))
