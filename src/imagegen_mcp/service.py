"""Orchestration: resolve a plan, try its candidates, store the images, return the result.

Plain async code with no protocol in it: the MCP layer and the CLI both call :class:`ImageService`. Each
request takes one availability snapshot; planning, skipping and the error that ends a plan all read it.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

import anyio
import anyio.to_thread

from imagegen_mcp import __version__, resolver
from imagegen_mcp.catalog import Catalog
from imagegen_mcp.config import FallbackMode, Settings
from imagegen_mcp.errors import (
    Attempt,
    BudgetExceededError,
    ConfigError,
    ErrorCode,
    ImageGenError,
    InvalidRequestError,
    NoProviderAvailableError,
    PlanFailedError,
    ProviderError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    internal_error,
    storage_error,
)
from imagegen_mcp.images import UnusableImageError
from imagegen_mcp.inputs import InputImage, InputPolicy, InputResolver
from imagegen_mcp.providers.base import (
    MAX_SEED,
    EditInputs,
    EditNeeds,
    EditOperation,
    GeneratedImage,
    GenerationRequest,
    ImageProvider,
    ModelConfig,
    Progress,
    ProviderResult,
    VendorModel,
)
from imagegen_mcp.redaction import Redactor
from imagegen_mcp.requests import EditImageArgs, ImageRequest, fit_request
from imagegen_mcp.resolver import Candidate, Plan, ProviderState
from imagegen_mcp.storage import CheckedImage, ImageStore, StoredImage, check_image

logger = logging.getLogger(__name__)
_E = TypeVar("_E", bound=BaseException)

#: How much of a provider's error message an attempt keeps: enough for the cause, never a vendor's whole reply.
MAX_REASON_CHARS = 300


class Budget(Protocol):
    """Decides whether a paid provider may run a request now (see :class:`imagegen_mcp.jobs.DailyBudget`)."""

    async def refusal(self, provider: str, model_id: str, count: int) -> str | None:
        """Why the request would pass the budget, or ``None`` when it may run."""


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
    #: The output's images, decoded and found usable (in the same order).
    checked: tuple[CheckedImage, ...] = ()
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
    def __init__(
        self, settings: Settings, catalog: Catalog, store: ImageStore | None = None, budget: Budget | None = None
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.store = store or ImageStore(settings.output_dir, settings.preview_max_px, settings.preview_format)
        self.redactor = Redactor(settings.secrets())
        self.budget = budget
        policy = InputPolicy(
            roots=(settings.output_dir, *settings.input_dirs),
            max_bytes=int(settings.max_input_mb * 1024 * 1024),
            allow_urls=settings.allow_url_inputs,
        )
        self.inputs = InputResolver(policy, self.store.path_for)
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
        needs: EditNeeds | None = None,
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
            needs=needs,
        )

    def next_candidate(self, states: Sequence[ProviderState]) -> Candidate | None:
        """The candidate a plain ``generate_image`` would run first right now, if any is available."""
        return next((c for c in self.plan(states).candidates if c.availability.met), None)

    def effective_order(self, states: Sequence[ProviderState]) -> list[str]:
        return resolver.effective_order(states, self.settings.provider_order)

    # -- generation -------------------------------------------------------------------------------

    async def generate(self, request: ImageRequest, progress: Progress | None = None) -> GenerationResult:
        """Run ``request`` (an :class:`~imagegen_mcp.requests.EditImageArgs` is an edit) through its plan."""
        progress = progress or Progress()
        started = time.perf_counter()
        states = self.catalog.states()
        vendor = await self._vendor_model(request.model)
        if vendor is not None:
            states = _with_model(states, *vendor)
        needs = request.needs if isinstance(request, EditImageArgs) else None
        plan = self.plan(states, model=request.model, provider=request.provider, mode=request.fallback, needs=needs)
        inputs = await self._inputs(request) if isinstance(request, EditImageArgs) else None
        seed = request.seed if request.seed is not None else secrets.randbelow(MAX_SEED + 1)
        attempts: tuple[Attempt, ...] = ()
        failures: tuple[ImageGenError, ...] = ()
        for index, candidate in enumerate(plan.candidates):
            if failures and candidate.availability.met:
                await progress.update(f"falling back to {candidate.id}")
                logger.warning("falling back to %s (%s) after: %s", candidate.id, candidate.why, failures[-1].message)
            refused = next((a.reason for a in attempts if a.code == ErrorCode.BUDGET_EXCEEDED), None)
            run = await self._try(
                candidate,
                request,
                seed,
                primary=index == 0,
                progress=progress,
                refused=refused,
                inputs=inputs,
                vendor=vendor,
            )
            attempts = (*attempts, run.attempt)
            if run.output is not None and run.request is not None:
                return await self._finish(run, run.output, run.request, request, attempts, started, progress)
            if run.error is not None:
                failures = (*failures, run.error)
                if not run.error.allows_fallback:
                    break
        raise self._unserved(plan, attempts, failures, states, needs)

    async def _vendor_model(self, ref: str | None) -> tuple[str, VendorModel[Any]] | None:
        """For ``provider:<vendor id>`` that no entry configures, the model its provider builds for it."""
        if ref is None:
            return None
        name, key = resolver.split_model_id(ref)
        provider = self.catalog.providers.get(name)
        if provider is None or key in provider.models or key in provider.retired_models():
            return None
        built = await provider.vendor_model(key)
        return (ref, built) if built is not None else None

    async def _inputs(self, request: EditImageArgs) -> _Inputs:
        """The edit's images, checked once for every candidate (a bad one is the caller's error, not a
        provider's)."""
        image = await self.inputs.resolve(request.image, "image")
        mask = await self.inputs.resolve_mask(request.mask, image) if request.mask is not None else None
        references = tuple(
            [
                await self.inputs.resolve(reference, f"reference_images[{index}]")
                for index, reference in enumerate(request.reference_images)
            ]
        )
        return _Inputs(image, mask, references)

    async def _try(
        self,
        candidate: Candidate,
        request: ImageRequest,
        seed: int,
        *,
        primary: bool,
        progress: Progress,
        refused: str | None = None,
        inputs: _Inputs | None = None,
        vendor: tuple[str, VendorModel[Any]] | None = None,
    ) -> _Run:
        """Run one candidate (or skip it: unavailable in the snapshot, unable to do the edit, over the budget)
        and report its attempt.

        ``refused``: the budget already refused this request (for an earlier candidate), so no paid one runs.
        """
        if candidate.unsuitable is not None:
            return _skipped(candidate, ErrorCode.INVALID_REQUEST, candidate.unsuitable)
        if not candidate.availability.met:
            return _skipped(candidate, ErrorCode.PROVIDER_UNAVAILABLE, candidate.availability.reason)
        provider = self.catalog.providers[candidate.provider]
        built = vendor[1] if vendor is not None and candidate.id == vendor[0] else None
        model = built.model if built is not None else provider.models[candidate.model]
        if provider.info.paid and self.budget is not None:
            refusal = refused or await self.budget.refusal(candidate.provider, candidate.id, request.count)
            if refusal is not None:
                return _skipped(candidate, ErrorCode.BUDGET_EXCEEDED, refusal)
        edit = inputs.for_model(model) if inputs is not None else None
        tried_at = time.perf_counter()
        try:
            job, adjustments = fit_request(request, model, candidate.id, primary=primary, seed=seed, edit=edit)
            _check_loras(provider, candidate, job)
            output = await self._run(provider, candidate, model, job, progress)
            checked = await _checked(candidate, output)
        except ImageGenError as error:
            logger.warning("%s failed: %s: %s", candidate.id, error.code.value, error.message)
            attempt = Attempt(
                provider=candidate.provider,
                model=candidate.model,
                outcome="failed",
                code=error.code,
                reason=_reason(self.redactor.text(error.message)),
                elapsed_ms=_ms_since(tried_at),
            )
            return _Run(attempt, error=error)
        attempt = Attempt(
            provider=candidate.provider, model=candidate.model, outcome="succeeded", elapsed_ms=_ms_since(tried_at)
        )
        adjustments.extend(_surprises(candidate, job, output, checked))
        if built is not None:
            adjustments.insert(0, built.note)
        return _Run(attempt, output=output, checked=checked, request=job, adjustments=tuple(adjustments))

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
            inner = _single(exc)
            if isinstance(inner, ImageGenError):
                raise inner from None
            raise internal_error(f"{candidate.id} failed unexpectedly ({type(inner).__name__})", exc) from exc
        if not output.images:
            raise ProviderError(
                f"{candidate.id} answered without an image.",
                retryable=True,
                remediation=["Try again; if it keeps happening, choose another model"],
            )
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
            "loras": [lora.model_dump(mode="json") for lora in job.loras],
            "cost_usd": output.cost,
            "operation": job.edit.operation if job.edit is not None else "generate",
            "inputs": job.edit.records() if job.edit is not None else [],
            "adjustments": list(adjustments),
            "attempts": [attempt.model_dump(mode="json", exclude_none=True) for attempt in attempts],
        }
        images = await self._save_all(run.checked, output.images, self.redactor.value(provenance))
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
        return result

    async def _save_all(
        self, checked: Sequence[CheckedImage], images: Sequence[GeneratedImage], provenance: Mapping[str, Any]
    ) -> tuple[SavedImage, ...]:
        """Save every image or none: when one cannot be written, the files already written are removed and the
        call fails with a ``storage_error`` naming the folder and the fix."""
        saved: list[SavedImage | None] = [None] * len(images)
        written: list[Path] = []

        async def save(index: int, image: GeneratedImage) -> None:
            record = {**provenance, "seed": image.seed, "index": index}
            stored = await anyio.to_thread.run_sync(self.store.save, checked[index], record, written)
            saved[index] = SavedImage(stored=stored, seed=image.seed)

        try:
            async with anyio.create_task_group() as group:
                for index, image in enumerate(images):
                    group.start_soon(save, index, image)
        except BaseException as exc:
            for path in written:
                path.unlink(missing_ok=True)
            refused = _first(exc, OSError)
            if refused is not None:
                raise storage_error(self.store.root, refused) from None
            raise
        return tuple(image for image in saved if image is not None)

    def _unserved(
        self,
        plan: Plan,
        attempts: tuple[Attempt, ...],
        failures: tuple[ImageGenError, ...],
        states: Sequence[ProviderState],
        needs: EditNeeds | None,
    ) -> ImageGenError:
        """The one error for a plan that produced no image, built from the attempts and the snapshot."""
        if failures:
            last = next(attempt for attempt in reversed(attempts) if attempt.outcome == "failed")
            return PlanFailedError(failures, attempts, provider=last.provider, model=f"{last.provider}:{last.model}")
        over_budget = [attempt for attempt in attempts if attempt.code == ErrorCode.BUDGET_EXCEEDED]
        if over_budget:
            return BudgetExceededError(
                f"Not generated: {over_budget[0].reason}. No other paid provider was tried instead.",
                provider=over_budget[0].provider,
                model=f"{over_budget[0].provider}:{over_budget[0].model}",
                remediation=[
                    "Wait until tomorrow (the budget is per local calendar day), or raise IMAGEGEN_DAILY_BUDGET_USD",
                    "Or use a local model, which costs nothing (see list_models)",
                ],
                attempts=attempts,
            )
        suitable = [candidate for candidate in plan.candidates if candidate.unsuitable is None]
        if not suitable and needs is not None:
            able = resolver.capable_models(states, needs)
            return InvalidRequestError(
                f"No model of the providers in the plan can {needs.describe()}."
                + (f" Models that can: {', '.join(able)}." if able else ""),
                remediation=[f"Pass model: one of {', '.join(able)}"] if able else needs.simpler(),
                attempts=attempts,
                details={"capable_models": able},
            )
        plan = replace(plan, candidates=tuple(suitable))
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


def _check_loras(provider: ImageProvider[Any], candidate: Candidate, job: GenerationRequest) -> None:
    problems = [f"{lora.label}: {problem}" for lora in job.loras if (problem := provider.lora_problem(lora))]
    if problems:
        raise InvalidRequestError(
            f"{candidate.id} cannot apply the LoRAs: {'; '.join(problems)}.",
            model=candidate.id,
            remediation=["Correct or drop the LoRAs named above"],
        )


def _skipped(candidate: Candidate, code: ErrorCode, reason: str | None) -> _Run:
    logger.info("skipping %s: %s", candidate.id, reason)
    return _Run(
        Attempt(provider=candidate.provider, model=candidate.model, outcome="skipped", code=code, reason=reason)
    )


@dataclass(frozen=True)
class _Inputs:
    """An edit's checked images, before a model is chosen."""

    image: InputImage
    mask: InputImage | None
    references: tuple[InputImage, ...]

    def for_model(self, model: ModelConfig) -> EditInputs:
        """The edit as ``model`` does it: inpainting with a mask, else from the image by strength where the model
        can, else by instruction (the strength is set when the request is fitted)."""
        if self.mask is not None:
            operation: EditOperation = "inpaint"
        elif model.inputs.image_to_image:
            operation = "image_to_image"
        else:
            operation = "instruction_edit"
        return EditInputs(operation, self.image, self.mask, self.references)


async def _checked(candidate: Candidate, output: ProviderResult) -> tuple[CheckedImage, ...]:
    """Every image of ``output`` decoded and checked before anything is written: unusable data is the
    provider's failure (``provider_error``, worth a retry or a fallback), never a file left behind."""
    checked: list[CheckedImage | None] = [None] * len(output.images)
    problems: list[tuple[int, UnusableImageError]] = []

    async def check(index: int, image: GeneratedImage) -> None:
        try:
            checked[index] = await anyio.to_thread.run_sync(check_image, image.data, image.decoded)
        except UnusableImageError as unusable:
            problems.append((index, unusable))

    async with anyio.create_task_group() as group:
        for index, image in enumerate(output.images):
            group.start_soon(check, index, image)
    if problems:
        index, unusable = min(problems, key=lambda problem: problem[0])
        raise ProviderError(
            f"{candidate.id} sent an unusable image (image {index + 1} of {len(output.images)} {unusable.problem}); "
            "nothing was saved.",
            retryable=True,
            remediation=["Try again; if it keeps happening, choose another model or provider"],
            details={"image_index": index, "problem": unusable.kind},
        )
    return tuple(image for image in checked if image is not None)


def _surprises(
    candidate: Candidate, job: GenerationRequest, output: ProviderResult, checked: Sequence[CheckedImage]
) -> list[str]:
    """What the provider made that differs from what it was asked for, in words for the result."""
    notes = []
    if len(checked) < job.count:
        notes.append(f"{len(checked)} of the {job.count} images asked for: {candidate.id} made no more")
    expected = output.size or (job.width, job.height)
    sizes = sorted({image.image.size for image in checked})
    if sizes != [expected]:
        made = ", ".join(f"{width}x{height}" for width, height in sizes)
        notes.append(f"{candidate.id} answered {made}, not the {expected[0]}x{expected[1]} it was asked for")
    return notes


def _reason(message: str) -> str:
    """A provider's failure as an attempt records it: its first sentence's worth, never a vendor's whole reply."""
    return message if len(message) <= MAX_REASON_CHARS else message[: MAX_REASON_CHARS - 1].rstrip() + "…"


def _with_model(states: Sequence[ProviderState], ref: str, built: VendorModel[Any]) -> tuple[ProviderState, ...]:
    """The snapshot with a model built for this request among its provider's (only for this request: the
    listings keep showing the configured models)."""
    name, key = resolver.split_model_id(ref)
    return tuple(
        replace(state, models=(*state.models, key), inputs={**state.inputs, key: built.model.inputs})
        if state.name == name
        else state
        for state in states
    )


def _first(exc: BaseException, kind: type[_E]) -> _E | None:
    """``exc`` itself, or the first exception of a task group's ``ExceptionGroup`` (at any depth), if a ``kind``."""
    if isinstance(exc, kind):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        return next((found for inner in exc.exceptions if (found := _first(inner, kind)) is not None), None)
    return None


def _single(exc: BaseException) -> BaseException:
    """The one exception a task group's ``ExceptionGroup`` holds (it wraps even a single failure)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _ms_since(start: float) -> int:
    return round((time.perf_counter() - start) * 1000)
