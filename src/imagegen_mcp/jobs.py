"""Every generate or edit call is a job: recorded before it runs, run apart from the tool call so that it
outlives a client's tool timeout, waited for up to ``wait_s``, and kept in the history.

A job runs in an asyncio task of the server's own (not the tool call's): when the call stops waiting, the work
goes on and the agent fetches the result with ``get_job``. Each job runs inside an anyio cancel scope, so
cancelling it (``cancel_job``, a client cancelling the call that started it, the server stopping) stops the
work the way a cancelled call always has: local steps stop at the next step, a cloud wait is abandoned.

The job model stays close to MCP's tasks (id, status, poll interval, result retrieval), which these jobs will
back once the SDK serves ``tasks/*``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import anyio
from pydantic import BaseModel, ConfigDict, Field

from imagegen_mcp.errors import (
    ErrorPayload,
    GenerationCancelledError,
    ImageGenError,
    InternalError,
    InvalidRequestError,
    JobInterruptedError,
    NotFoundError,
    internal_error,
)
from imagegen_mcp.history import (
    JOB_ID_PATTERN,
    Cancelled,
    Failed,
    Finish,
    HistoryStore,
    Job,
    JobKind,
    JobStatus,
    NewImage,
    Parent,
    ParentRole,
    Succeeded,
)
from imagegen_mcp.providers.base import Progress, ProgressSink
from imagegen_mcp.redaction import Redactor
from imagegen_mcp.requests import WAIT_S_DESCRIPTION, ImageRequest
from imagegen_mcp.results import GenerateImageOutput, generation_output
from imagegen_mcp.service import GenerationResult, ImageService

logger = logging.getLogger(__name__)

JOB_URI_PREFIX = "imagegen://jobs/"
#: Finished jobs whose results (previews included) stay in memory for ``get_job``; older ones are rebuilt
#: from the history and the stored images.
FINISHED_IN_MEMORY = 256
#: How long stopping the server waits for cancelled jobs to record how they ended.
CLOSE_TIMEOUT_S = 5.0


class JobInfo(BaseModel):
    """A job's state: what an agent needs to fetch its result later."""

    id: str
    status: JobStatus
    progress: float = Field(description="Fraction done, 0-1.")
    message: str | None
    uri: str
    poll_interval_ms: int
    created_at: str
    updated_at: str


class JobOutput(BaseModel):
    job: JobInfo


class GetJobArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    job_id: str = Field(description="The job id a generate_image result gave.")
    wait_s: float | None = Field(None, ge=0, le=300, description=WAIT_S_DESCRIPTION)


class CancelJobArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    job_id: str = Field(description="The job to stop.")


@dataclass(frozen=True)
class Done:
    """A job that made its images: the result exactly as ``generate_image`` returns it."""

    output: GenerateImageOutput
    #: The preview of each image, in order (empty bytes for an image whose file has since been deleted).
    previews: tuple[bytes, ...]


@dataclass(frozen=True)
class Ended:
    """A job that failed, was cancelled or was interrupted."""

    error: ErrorPayload


#: What waiting for a job gives: its result, its error, or its state while it still runs.
JobView = Done | Ended | JobInfo


@dataclass
class _Running:
    job: Job
    status: JobStatus = "queued"
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    done: anyio.Event = field(default_factory=anyio.Event)
    listeners: set[ProgressSink] = field(default_factory=set)
    progress: float = 0.0
    message: str | None = None
    updated_at: datetime | None = None


class JobRunner:
    """Submits, runs, waits for and cancels jobs; records each one in ``history``."""

    def __init__(self, service: ImageService, history: HistoryStore, *, poll_interval_ms: int = 1000) -> None:
        self.service = service
        self.history = history
        self.poll_interval_ms = poll_interval_ms
        self.redactor: Redactor = service.redactor
        self._running: dict[str, _Running] = {}
        self._finished: OrderedDict[str, Done | Ended] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()

    async def open(self) -> int:
        """Mark the jobs a previous process left unfinished as interrupted; returns how many there were."""
        interrupted = await self.history.mark_interrupted_at_start()
        if interrupted:
            logger.warning("%d job(s) of an earlier run were interrupted; their saved images stay listed", interrupted)
        return interrupted

    async def submit(self, kind: JobKind, request: ImageRequest, arguments: Mapping[str, Any]) -> str:
        """Record a job for ``request`` (``arguments`` as the caller sent them) and start it; returns its id."""
        job = await self.history.create_job(
            kind, self.redactor.value(dict(arguments)), poll_interval_ms=self.poll_interval_ms
        )
        running = _Running(job)
        self._running[job.id] = running
        task = asyncio.get_running_loop().create_task(self._run(running, request), name=f"imagegen-{job.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job.id

    async def wait(
        self, job_id: str, wait_s: float, progress: ProgressSink | None = None, *, cancel_with_caller: bool = False
    ) -> JobView:
        """The job's result once it is done, or its state after ``wait_s`` seconds.

        ``progress`` hears the job's progress meanwhile. ``cancel_with_caller``: the job is cancelled when the
        waiting caller is (the call that started it was cancelled by its client).
        """
        running = self._running.get(self._checked(job_id))
        if running is None:
            return await self.view(job_id)
        if progress is not None:
            running.listeners.add(progress)
        try:
            with anyio.move_on_after(wait_s):
                await running.done.wait()
        except anyio.get_cancelled_exc_class():
            if cancel_with_caller:
                running.scope.cancel()
            raise
        finally:
            if progress is not None:
                running.listeners.discard(progress)
        return await self.view(job_id)

    async def cancel(self, job_id: str) -> JobInfo:
        """Stop the job if it still runs, and wait until it has stopped; a finished job is left as it is."""
        running = self._running.get(self._checked(job_id))
        if running is not None:
            running.scope.cancel()
            await running.done.wait()
        return await self.info(job_id)

    async def view(self, job_id: str) -> JobView:
        """The job's result, its error, or its state while it runs (also for jobs of earlier runs)."""
        self._checked(job_id)
        if job_id in self._finished:
            return self._finished[job_id]
        running = self._running.get(job_id)
        if running is not None:
            return self._info_of_running(running)
        job = await self.history.get_job(job_id)
        if job is None:
            raise self._not_found(job_id)
        return await self._view_from_history(job)

    async def info(self, job_id: str) -> JobInfo:
        running = self._running.get(self._checked(job_id))
        if running is not None:
            return self._info_of_running(running)
        job = await self.history.get_job(job_id)
        if job is None:
            raise self._not_found(job_id)
        return job_info(job)

    async def aclose(self) -> None:
        """Cancel the jobs still running, let them record how they ended, and close the history."""
        for running in self._running.values():
            running.scope.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=CLOSE_TIMEOUT_S)
        await self.history.aclose()

    # -- running one job -------------------------------------------------------------------------------

    async def _run(self, running: _Running, request: ImageRequest) -> None:
        job_id = running.job.id
        outcome: Done | Ended
        result: GenerationResult | None = None
        error: ImageGenError | None = None
        with running.scope:
            try:
                await self.history.mark_running(job_id)
                running.status = "running"
                result = await self.service.generate(request, Progress(self._reporter(running)))
            except ImageGenError as exc:
                error = exc
            except Exception as exc:
                error = internal_error(f"Job {job_id} failed unexpectedly ({type(exc).__name__})", exc)
        if running.scope.cancelled_caught and result is None:
            error = GenerationCancelledError(
                f"Job {job_id} was cancelled before it finished; nothing was saved.",
                remediation=["Call generate_image again to make the image"],
            )
        # Shielded: a job cancelled while the server stops still records how it ended.
        with anyio.CancelScope(shield=True):
            try:
                outcome = await self._record(job_id, result, error)
            except Exception:
                logger.exception("recording the end of job %s failed", job_id)
                outcome = Ended(
                    self.redactor.payload(error or InternalError("The job's result could not be recorded."))
                )
            self._finished[job_id] = outcome
            while len(self._finished) > FINISHED_IN_MEMORY:
                self._finished.popitem(last=False)
            del self._running[job_id]
            running.done.set()

    async def _record(self, job_id: str, result: GenerationResult | None, error: ImageGenError | None) -> Done | Ended:
        if result is not None:
            output = GenerateImageOutput.model_validate(
                self.redactor.value(generation_output(result).model_dump(mode="json"))
            )
            images = [_new_image(output, index, result) for index in range(len(result.images))]
            finish = Finish(
                Succeeded(output.model_dump(mode="json"), images),
                provider=output.provider,
                model=output.model,
                cost_usd=output.cost_usd,
                attempts=[attempt.model_dump(mode="json") for attempt in output.attempts],
            )
            try:
                await self.history.finish_job(job_id, finish)
            except Exception:
                # The images are saved and this result names them; only the history misses them.
                logger.exception("recording job %s in the history failed", job_id)
                note = "the images are saved, but the history could not record them (see the server log)"
                output = output.model_copy(update={"adjustments": [*output.adjustments, note]})
            return Done(output, tuple(saved.stored.preview for saved in result.images))
        assert error is not None
        payload = self.redactor.payload(error)
        ending = (
            Cancelled(payload.model_dump(mode="json"))
            if isinstance(error, GenerationCancelledError)
            else Failed(payload.model_dump(mode="json"))
        )
        await self.history.finish_job(
            job_id,
            Finish(
                ending,
                provider=payload.provider,
                model=payload.model,
                attempts=[attempt.model_dump(mode="json") for attempt in payload.attempts],
            ),
        )
        return Ended(payload)

    def _reporter(self, running: _Running) -> ProgressSink:
        """The sink of the job's progress: every waiting caller, and the history."""

        async def report(progress: float, total: float | None, message: str | None) -> None:
            running.progress = progress / (total or 100.0)
            running.message = message
            running.updated_at = datetime.now().astimezone()
            for listener in list(running.listeners):
                try:
                    await listener(progress, total, message)
                except Exception:  # a caller that went away must not stop the work
                    running.listeners.discard(listener)
            await self.history.update_progress(running.job.id, min(running.progress, 1.0), message)

        return report

    # -- views -----------------------------------------------------------------------------------------

    def _info_of_running(self, running: _Running) -> JobInfo:
        """The recorded job with its live state in this process, which is newer."""
        job = running.job
        return job_info(
            replace(
                job,
                status=running.status,
                progress=running.progress,
                progress_message=running.message,
                updated_at=running.updated_at or job.updated_at,
            )
        )

    async def _view_from_history(self, job: Job) -> JobView:
        if job.status == "succeeded" and job.result is not None:
            output = GenerateImageOutput.model_validate(job.result)
            previews = await anyio.to_thread.run_sync(self._previews, output)
            return Done(output, previews)
        if job.status in ("failed", "cancelled") and job.error is not None:
            return Ended(ErrorPayload.model_validate(job.error))
        if job.status == "interrupted":
            error = JobInterruptedError(
                f"Job {job.id} was interrupted: the server stopped before it finished. Images it had saved stay "
                "in the history (search_images).",
                remediation=["Call generate_image again to make the image"],
            )
            return Ended(self.redactor.payload(error))
        return job_info(job)

    def _previews(self, output: GenerateImageOutput) -> tuple[bytes, ...]:
        previews = []
        for image in output.images:
            try:
                previews.append(self.service.store.preview_of(image.id))
            except (OSError, ValueError):
                previews.append(b"")
        return tuple(previews)

    def _checked(self, job_id: str) -> str:
        if not JOB_ID_PATTERN.match(job_id):
            raise InvalidRequestError(
                f"{job_id[:80]!r} is not a job id; job ids look like 'job_0123456789abcdef'.",
                remediation=["Pass the job id a generate_image result gave (structured content: job.id)"],
            )
        return job_id

    @staticmethod
    def _not_found(job_id: str) -> NotFoundError:
        return NotFoundError(
            f"No job {job_id!r} in the history.",
            remediation=["Pass the id a generate_image result gave; search_images finds earlier images"],
        )


def job_info(job: Job) -> JobInfo:
    return JobInfo(
        id=job.id,
        status=job.status,
        progress=round(job.progress, 4),
        message=job.progress_message,
        uri=JOB_URI_PREFIX + job.id,
        poll_interval_ms=job.poll_interval_ms,
        created_at=job.created_at.isoformat(timespec="seconds"),
        updated_at=job.updated_at.isoformat(timespec="seconds"),
    )


def _new_image(output: GenerateImageOutput, index: int, result: GenerationResult) -> NewImage:
    image = output.images[index]
    share = output.cost_usd / len(output.images) if output.cost_usd is not None else None
    return NewImage(
        image_id=image.id,
        path=result.images[index].stored.path,
        uri=image.uri,
        prompt=result.parameters.prompt,
        negative_prompt=output.parameters.negative_prompt,
        provider=output.provider,
        model=output.model,
        width=image.width,
        height=image.height,
        seed=image.seed,
        cost_usd=share,
        parents=[Parent(info.image_id, _role(info.argument)) for info in output.inputs if info.image_id is not None],
    )


def _role(argument: str) -> ParentRole:
    if argument == "mask":
        return "mask"
    return "image" if argument == "image" else "reference"


class DailyBudget:
    """IMAGEGEN_DAILY_BUDGET_USD: a paid request runs only while what was spent today (local calendar day) plus
    what this request is likely to cost stays within the budget.

    A request's likely cost is its image count times the last known per-image cost of the same model in the
    history; a model that has never reported one is assumed free until it does, and a day whose known spending
    has reached the budget refuses every paid request. Requests in flight at once are not counted against each
    other, so concurrent ones may pass the budget by about one request.
    """

    def __init__(self, limit_usd: float, history: HistoryStore, now: Callable[[], datetime] | None = None) -> None:
        self.limit_usd = limit_usd
        self.history = history
        self._now = now or (lambda: datetime.now().astimezone())

    async def refusal(self, provider: str, model_id: str, count: int) -> str | None:
        now = self._now()
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        spent = sum(s.known_cost_usd for s in (await self.history.spend(midnight, now + timedelta(seconds=1))).values())
        last = await self.history.search_images(model=model_id, limit=1)
        per_image = last[0].cost_usd if last and last[0].cost_usd is not None else 0.0
        likely = per_image * count
        if spent >= self.limit_usd or spent + likely > self.limit_usd:
            return (
                f"{model_id} would cost about {likely:.4f} USD; spent today {spent:.4f} USD of the "
                f"IMAGEGEN_DAILY_BUDGET_USD of {self.limit_usd:g} USD"
            )
        return None
