"""The job and history store: every generation is a job, and every saved image a searchable history row.

Callers see :class:`HistoryStore`, a small async interface, so that a database shared by several server
replicas can replace the embedded :class:`SQLiteHistory` without touching them.

:class:`SQLiteHistory` keeps one connection on one dedicated worker thread; every method hands its work to
that thread and awaits it, so the event loop never waits on the disk. The database runs in WAL mode with
``synchronous=NORMAL``: a commit survives the process being killed (it is in the WAL), and only a power
loss can undo the last few. Each write is one short ``BEGIN IMMEDIATE`` transaction, so a crash leaves every
row either fully written or absent.

Several processes may share one database file (two MCP clients each start a server with the default path).
Each open store holds a lock file in the ``<database>.owners`` folder for its lifetime and stamps its jobs
with that owner; :meth:`SQLiteHistory.mark_interrupted_at_start` interrupts only the jobs of owners whose
lock the operating system has released, that is of processes that ended.

Times are timezone-aware :class:`~datetime.datetime` values in the API, stored as fixed-width UTC ISO 8601
text (``2025-01-31T12:00:00.000000Z``), so they sort as text and read well in any SQLite shell.

Search (:meth:`HistoryStore.search_images`) uses FTS5 over the prompts. The user's text is split at
whitespace and each word quoted as an FTS5 string, so no input can be a syntax error or an operator (``NOT``,
``NEAR``, ``*`` and quotes are plain text). Every word must match (AND), as a whole token, except the last,
which also matches as a prefix (``light`` finds "lighthouse"), because people type the last word
unfinished. Tokens are case- and accent-insensitive (``unicode61 remove_diacritics 2``); there is no
stemming, so ``cats`` does not find "cat" (stemming would break the prefix match on partial words).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import sqlite3
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self, TypeVar, cast, get_args

import platformdirs

from imagegen_mcp.storage import IMAGE_ID_PATTERN

JOB_ID_PATTERN = re.compile(r"^job_[0-9a-f]{16}$")
JobKind = Literal["generate", "edit"]
JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled", "interrupted"]
ParentRole = Literal["image", "mask", "reference"]
UNFINISHED: tuple[JobStatus, ...] = ("queued", "running")
DEFAULT_POLL_INTERVAL_MS = 1000
MAX_LIMIT = 1000
BUSY_TIMEOUT_MS = 5000
LOCK_FILE_GRACE_S = 60

JSONObject = dict[str, Any]
_T = TypeVar("_T")


def default_db_path() -> Path:
    """Beside the default images folder, in the platform's user data folder."""
    return platformdirs.user_data_path("imagegen-mcp", appauthor=False) / "history.sqlite3"


class HistoryError(Exception):
    """The history store cannot do what was asked (closed, unusable, or newer than this program)."""


class UnknownJobError(HistoryError, LookupError):
    """No job has this id."""


class JobStateError(HistoryError):
    """The job is not in a state that allows this change (for example, finishing a finished job)."""


# -- records -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Job:
    """One generate or edit call, close to an MCP task: poll it by ``id`` until ``status`` is final."""

    id: str
    kind: JobKind
    status: JobStatus
    progress: float
    progress_message: str | None
    request: JSONObject
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    result: JSONObject | None
    error: JSONObject | None
    provider: str | None
    model: str | None
    #: ``None`` means unknown, which is not zero.
    cost_usd: float | None
    attempts: list[JSONObject]
    poll_interval_ms: int

    @property
    def finished(self) -> bool:
        return self.status not in UNFINISHED


@dataclass(frozen=True, slots=True)
class Parent:
    """An image an edit started from, and what it was used as."""

    image_id: str
    role: ParentRole


@dataclass(frozen=True, slots=True)
class NewImage:
    """A saved image to record with its job."""

    image_id: str
    path: Path
    uri: str
    prompt: str
    provider: str
    model: str
    width: int
    height: int
    seed: int | None = None
    negative_prompt: str | None = None
    #: This image's share of the job's cost; ``None`` when unknown.
    cost_usd: float | None = None
    parents: Sequence[Parent] = ()


@dataclass(frozen=True, slots=True)
class ImageRecord:
    """One history row: what a search or a generation lists (never the image's bytes)."""

    image_id: str
    job_id: str
    path: Path
    uri: str
    prompt: str
    negative_prompt: str | None
    provider: str
    model: str
    seed: int | None
    width: int
    height: int
    cost_usd: float | None
    created_at: datetime
    deleted_at: datetime | None


@dataclass(frozen=True, slots=True)
class LinkedImage:
    """A parent or child of an image. ``image`` is ``None`` for a parent the history has no row for."""

    image_id: str
    role: ParentRole
    image: ImageRecord | None


@dataclass(frozen=True, slots=True)
class Generation:
    job: Job
    images: list[ImageRecord]


@dataclass(frozen=True, slots=True)
class ProviderSpend:
    provider: str
    #: The sum of the costs that are known.
    known_cost_usd: float
    #: Succeeded generations whose cost is unknown (so ``known_cost_usd`` is a lower bound when not zero).
    unknown_cost_generations: int
    generations: int


@dataclass(frozen=True, slots=True)
class Succeeded:
    result: JSONObject
    images: Sequence[NewImage] = ()


@dataclass(frozen=True, slots=True)
class Failed:
    error: JSONObject


@dataclass(frozen=True, slots=True)
class Cancelled:
    error: JSONObject | None = None


Outcome = Succeeded | Failed | Cancelled


@dataclass(frozen=True, slots=True)
class Finish:
    """What is known about a job when it ends, whatever its outcome."""

    outcome: Outcome
    #: The provider and model that served the job, or the last ones tried.
    provider: str | None = None
    model: str | None = None
    cost_usd: float | None = None
    attempts: Sequence[JSONObject] = ()


# -- the interface --------------------------------------------------------------------------------------------


class HistoryStore(ABC):
    """Jobs and their saved images. Every method is a coroutine; none blocks the event loop."""

    @abstractmethod
    async def create_job(
        self, kind: JobKind, request: JSONObject, *, poll_interval_ms: int = DEFAULT_POLL_INTERVAL_MS
    ) -> Job:
        """Record a new queued job (before any work starts) and return it with its new id."""

    @abstractmethod
    async def mark_running(self, job_id: str) -> None:
        """queued -> running. Raises :class:`UnknownJobError` or :class:`JobStateError`."""

    @abstractmethod
    async def update_progress(self, job_id: str, progress: float, message: str | None = None) -> None:
        """Set a running job's progress (0 to 1). Cheap; updates that arrive while one is written coalesce.

        An update for a job that is not running (it just finished) is ignored.
        """

    @abstractmethod
    async def add_images(self, job_id: str, images: Sequence[NewImage]) -> None:
        """Record images of an unfinished job as soon as they are saved, so that they outlive a crash."""

    @abstractmethod
    async def finish_job(self, job_id: str, finish: Finish) -> Job:
        """queued or running -> succeeded (with its result and images), failed or cancelled; one transaction."""

    @abstractmethod
    async def get_job(self, job_id: str) -> Job | None: ...

    @abstractmethod
    async def recent_jobs(self, limit: int = 20) -> list[Job]:
        """Jobs in any state, newest created first."""

    @abstractmethod
    async def recent_generations(self, limit: int = 20, *, include_deleted: bool = False) -> list[Generation]:
        """Succeeded jobs with their images, most recently finished first."""

    @abstractmethod
    async def get_generation(self, job_id: str, *, include_deleted: bool = False) -> Generation | None:
        """A job in any state with the images recorded for it."""

    @abstractmethod
    async def mark_interrupted_at_start(self) -> int:
        """Jobs left queued or running by a process that has ended become interrupted; returns how many.

        Their recorded images stay listed.
        """

    @abstractmethod
    async def search_images(
        self,
        query: str | None = None,
        *,
        provider: str | None = None,
        model: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 20,
        include_deleted: bool = False,
    ) -> list[ImageRecord]:
        """Images whose prompt matches ``query`` (see the module's notes), newest first.

        ``since`` is inclusive, ``until`` exclusive. A query without any word matches nothing.
        """

    @abstractmethod
    async def get_image(self, image_id: str) -> ImageRecord | None: ...

    @abstractmethod
    async def delete_image(self, image_id: str) -> ImageRecord | None:
        """Mark an image deleted and return its row, so that the caller can remove the file.

        ``None`` for an unknown id. Deleting it again returns the row with its first ``deleted_at``.
        """

    @abstractmethod
    async def parents_of(self, image_id: str) -> list[LinkedImage]: ...

    @abstractmethod
    async def children_of(self, image_id: str) -> list[LinkedImage]: ...

    @abstractmethod
    async def spend(
        self, since: datetime, until: datetime | None = None, *, provider: str | None = None
    ) -> dict[str, ProviderSpend]:
        """Per provider, the jobs finished in ``[since, until)``. The caller picks the boundaries' time zone.

        A failed or cancelled job counts only when its cost is known; without one it is taken to be free.
        """

    @abstractmethod
    async def integrity_check(self) -> list[str]:
        """Problems found in the store; empty when it is sound."""

    @abstractmethod
    async def aclose(self) -> None:
        """Release the store. Its own unfinished jobs become interrupted: nobody will finish them."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.aclose()


# -- the SQLite schema ----------------------------------------------------------------------------------------

SCHEMA_V1 = """
CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('generate', 'edit')),
    status TEXT NOT NULL
        CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled', 'interrupted')),
    owner TEXT NOT NULL,
    progress REAL NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 1),
    progress_message TEXT,
    request TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    result TEXT,
    error TEXT,
    provider TEXT,
    model TEXT,
    cost_usd REAL,
    attempts TEXT NOT NULL DEFAULT '[]',
    poll_interval_ms INTEGER NOT NULL
);
CREATE INDEX jobs_by_status ON jobs (status, finished_at);
CREATE INDEX jobs_by_finished ON jobs (finished_at);
CREATE INDEX jobs_by_created ON jobs (created_at);

-- seq is the row's stable integer key (FTS5 refers to it; an implicit rowid could change on VACUUM) and
-- the recording order, which is what "newest first" means.
CREATE TABLE images (
    seq INTEGER PRIMARY KEY,
    image_id TEXT NOT NULL UNIQUE,
    job_id TEXT NOT NULL REFERENCES jobs (id),
    path TEXT NOT NULL,
    uri TEXT NOT NULL,
    prompt TEXT NOT NULL,
    negative_prompt TEXT,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    seed INTEGER,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    cost_usd REAL,
    created_at TEXT NOT NULL,
    deleted_at TEXT
);
CREATE INDEX images_by_job ON images (job_id);
CREATE INDEX images_by_provider ON images (provider);
CREATE INDEX images_by_model ON images (model);
CREATE INDEX images_by_created ON images (created_at);

-- No foreign key on parent_id: an edit may start from an image older than the history, or stored elsewhere.
-- position keeps the order the edit was given its inputs in.
CREATE TABLE image_parents (
    image_id TEXT NOT NULL REFERENCES images (image_id),
    position INTEGER NOT NULL,
    parent_id TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('image', 'mask', 'reference')),
    PRIMARY KEY (image_id, position)
) WITHOUT ROWID;
CREATE INDEX image_parents_by_parent ON image_parents (parent_id);

CREATE VIRTUAL TABLE images_fts USING fts5 (
    prompt, content = 'images', content_rowid = 'seq', tokenize = 'unicode61 remove_diacritics 2'
);
CREATE TRIGGER images_fts_insert AFTER INSERT ON images BEGIN
    INSERT INTO images_fts (rowid, prompt) VALUES (new.seq, new.prompt);
END;
CREATE TRIGGER images_fts_delete AFTER DELETE ON images BEGIN
    INSERT INTO images_fts (images_fts, rowid, prompt) VALUES ('delete', old.seq, old.prompt);
END;
CREATE TRIGGER images_fts_update AFTER UPDATE OF prompt ON images BEGIN
    INSERT INTO images_fts (images_fts, rowid, prompt) VALUES ('delete', old.seq, old.prompt);
    INSERT INTO images_fts (rowid, prompt) VALUES (new.seq, new.prompt);
END;
"""

#: Schema steps from the first version on: step ``n`` (1-based) takes a database from version ``n - 1`` to
#: ``n`` (``PRAGMA user_version``). Append new steps; never edit a released one.
MIGRATIONS: tuple[str, ...] = (SCHEMA_V1,)


def split_statements(script: str) -> list[str]:
    """The SQL statements of ``script``, trigger bodies kept whole (``sqlite3.complete_statement``)."""
    statements: list[str] = []
    start = 0
    for index, char in enumerate(script):
        if char == ";" and sqlite3.complete_statement(script[start : index + 1]):
            statements.append(script[start : index + 1].strip())
            start = index + 1
    if script[start:].strip():
        statements.append(script[start:].strip())
    return statements


def migrate(connection: sqlite3.Connection, migrations: Sequence[str]) -> int:
    """Apply the steps the database has not had yet, each in its own transaction; returns the version.

    The version is read inside the write transaction, so two processes opening a new database at once
    apply each step once.
    """
    while True:
        with _transaction(connection):
            version = cast(int, connection.execute("PRAGMA user_version").fetchone()[0])
            if version > len(migrations):
                raise HistoryError(
                    f"The history database is at schema version {version}, newer than this program's "
                    f"({len(migrations)}). Upgrade imagegen-mcp, or point IMAGEGEN_DB at another file."
                )
            if version == len(migrations):
                return version
            for statement in split_statements(migrations[version]):
                connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {version + 1}")


@contextlib.contextmanager
def _transaction(connection: sqlite3.Connection) -> Iterator[None]:
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


# -- conversions ----------------------------------------------------------------------------------------------


def _stamp(moment: datetime | None = None) -> str:
    moment = datetime.now(UTC) if moment is None else moment
    if moment.tzinfo is None:
        raise ValueError("a naive datetime is ambiguous: give it a time zone")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


_JOB_COLUMNS = (
    "id, kind, status, progress, progress_message, request, created_at, updated_at, started_at, finished_at, "
    "result, error, provider, model, cost_usd, attempts, poll_interval_ms"
)
_IMAGE_COLUMNS = (
    "images.image_id, images.job_id, images.path, images.uri, images.prompt, images.negative_prompt, "
    "images.provider, images.model, images.seed, images.width, images.height, images.cost_usd, "
    "images.created_at, images.deleted_at"
)


def _job_from(row: sqlite3.Row) -> Job:
    return Job(
        id=row["id"],
        kind=row["kind"],
        status=row["status"],
        progress=row["progress"],
        progress_message=row["progress_message"],
        request=json.loads(row["request"]),
        created_at=datetime.fromisoformat(row["created_at"]),
        updated_at=datetime.fromisoformat(row["updated_at"]),
        started_at=_time(row["started_at"]),
        finished_at=_time(row["finished_at"]),
        result=_loads(row["result"]),
        error=_loads(row["error"]),
        provider=row["provider"],
        model=row["model"],
        cost_usd=row["cost_usd"],
        attempts=json.loads(row["attempts"]),
        poll_interval_ms=row["poll_interval_ms"],
    )


def _image_from(row: sqlite3.Row) -> ImageRecord:
    return ImageRecord(
        image_id=row["image_id"],
        job_id=row["job_id"],
        path=Path(row["path"]),
        uri=row["uri"],
        prompt=row["prompt"],
        negative_prompt=row["negative_prompt"],
        provider=row["provider"],
        model=row["model"],
        seed=row["seed"],
        width=row["width"],
        height=row["height"],
        cost_usd=row["cost_usd"],
        created_at=datetime.fromisoformat(row["created_at"]),
        deleted_at=_time(row["deleted_at"]),
    )


def _linked_from(row: sqlite3.Row) -> LinkedImage:
    return LinkedImage(row["linked"], row["role"], None if row["image_id"] is None else _image_from(row))


def _spend_from(row: sqlite3.Row) -> ProviderSpend:
    return ProviderSpend(row[0], row[1], row[2], row[3])


def match_expression(query: str) -> str | None:
    """The FTS5 expression for a user's text: each word quoted, the last also a prefix; ``None`` if no word."""
    words = [word for word in query.split() if any(char.isalnum() for char in word)]
    if not words:
        return None
    quoted = ['"' + word.replace('"', '""') + '"' for word in words]
    quoted[-1] += "*"
    return " ".join(quoted)


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")


def _check_images(images: Sequence[NewImage]) -> None:
    for image in images:
        for image_id in (image.image_id, *(parent.image_id for parent in image.parents)):
            if not IMAGE_ID_PATTERN.match(image_id):
                raise ValueError(f"not an image id: {image_id!r}")


# -- owners: which process's jobs are these? ------------------------------------------------------------------


def _lock(descriptor: int, *, wait: bool) -> bool:
    """Lock the open file exclusively; the operating system releases it when the process ends, however it ends."""
    try:
        if sys.platform == "win32":
            import msvcrt

            msvcrt.locking(descriptor, msvcrt.LK_LOCK if wait else msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            fcntl.flock(descriptor, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _hold_lock(path: Path) -> int:
    """Create and lock an owner's file for as long as the store is open (waiting out a probe of it)."""
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    if not _lock(descriptor, wait=True):
        os.close(descriptor)
        raise HistoryError(f"cannot lock {path}")
    return descriptor


def _is_held(path: Path) -> bool:
    """Whether an open store holds this owner's file. A missing file is an owner long gone."""
    try:
        descriptor = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        return not _lock(descriptor, wait=False)
    finally:
        os.close(descriptor)


def _sweep_lock_files(folder: Path, own: Path) -> None:
    """Remove the files of owners that ended. A young free file may be a store that is opening right now
    (created, not yet locked), so only files older than :data:`LOCK_FILE_GRACE_S` go."""
    cutoff = time.time() - LOCK_FILE_GRACE_S
    for path in folder.glob("*.lock"):
        with contextlib.suppress(FileNotFoundError):
            if path != own and path.stat().st_mtime < cutoff and not _is_held(path):
                path.unlink()


# -- the SQLite implementation --------------------------------------------------------------------------------

_INTERRUPT = (
    "UPDATE jobs SET status = 'interrupted', finished_at = ?, updated_at = ? "
    "WHERE owner = ? AND status IN ('queued', 'running')"
)


class SQLiteHistory(HistoryStore):
    """The embedded store: one SQLite file, one connection, on one worker thread.

    Constructing it does no I/O: it queues the opening (create, pragmas, migrations) on the worker, and the
    first awaited call (or ``async with``) raises if that failed. A call that is cancelled while its work is
    queued or running still has that work done; only the wait is cancelled. It runs on asyncio (as the server
    does): the worker hands results back with ``call_soon_threadsafe``, never blocking either side.
    """

    def __init__(self, path: Path, *, migrations: Sequence[str] = MIGRATIONS) -> None:
        self.path = path
        self.owner = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._owners = path.with_name(path.name + ".owners")
        self._lock_file = self._owners / f"{self.owner}.lock"
        self._connection: sqlite3.Connection | None = None
        self._owner_lock: int | None = None
        self._closed = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="imagegen-history")
        self._opened = self._executor.submit(self._open, tuple(migrations))
        self._progress_lock = threading.Lock()
        self._pending_progress: dict[str, tuple[float, str | None, str]] = {}
        self._progress_flush: Future[None] | None = None

    # On the worker thread.

    def _open(self, migrations: tuple[str, ...]) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._connection = self._connect(migrations)
        except (sqlite3.Error, OSError) as exc:
            raise HistoryError(f"Cannot open the history database {self.path}: {exc}") from exc

    def _connect(self, migrations: tuple[str, ...]) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, isolation_level=None)
        try:
            connection.row_factory = sqlite3.Row
            connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("PRAGMA synchronous = NORMAL")
            connection.execute("PRAGMA foreign_keys = ON")
            if not connection.execute("SELECT sqlite_compileoption_used('ENABLE_FTS5')").fetchone()[0]:
                raise HistoryError(
                    f"This Python's SQLite ({sqlite3.sqlite_version}) lacks FTS5, which the history's search "
                    "needs. Use a Python build whose sqlite3 module has FTS5 (python.org and most distributions do)."
                )
            migrate(connection, migrations)
            self._owners.mkdir(exist_ok=True)
            self._owner_lock = _hold_lock(self._lock_file)
        except BaseException:
            connection.close()
            raise
        return connection

    def _with_connection(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        if self._connection is None:
            self._opened.result()  # raises why it did not open
            raise HistoryError("the history store is closed")
        try:
            return work(self._connection)
        except sqlite3.Error as exc:  # callers handle one kind of error, whatever the store's database
            raise HistoryError(f"History database error: {exc}") from exc

    def _close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:  # it never opened
            return
        try:
            now = _stamp()
            with _transaction(connection):
                connection.execute(_INTERRUPT, (now, now, self.owner))
            connection.execute("PRAGMA optimize")
        finally:
            connection.close()
            if self._owner_lock is not None:
                os.close(self._owner_lock)
                self._lock_file.unlink(missing_ok=True)

    @staticmethod
    def _require_job(connection: sqlite3.Connection, job_id: str, *, expected: str | None = None) -> Job:
        """The job, or :class:`UnknownJobError`; with ``expected``, the :class:`JobStateError` it deserves."""
        row = connection.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise UnknownJobError(f"no job {job_id!r}")
        job = _job_from(row)
        if expected is not None:
            raise JobStateError(f"job {job_id} is {job.status}, not {expected}")
        return job

    def _write_progress(self, connection: sqlite3.Connection) -> None:
        with self._progress_lock:
            pending, self._pending_progress = self._pending_progress, {}
            self._progress_flush = None
        with _transaction(connection):
            connection.executemany(
                "UPDATE jobs SET progress = ?, progress_message = ?, updated_at = ? "
                "WHERE id = ? AND status = 'running'",
                [(*values, job_id) for job_id, values in pending.items()],
            )

    # On the event loop.

    def _submit(self, work: Callable[[sqlite3.Connection], _T]) -> Future[_T]:
        if self._closed:
            raise HistoryError("the history store is closed")
        return self._executor.submit(self._with_connection, work)

    async def _run(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        return await _wait(self._submit(work))

    async def _one(self, sql: str, parameters: Sequence[object], convert: Callable[[sqlite3.Row], _T]) -> _T | None:
        def read(connection: sqlite3.Connection) -> _T | None:
            row = connection.execute(sql, parameters).fetchone()
            return None if row is None else convert(row)

        return await self._run(read)

    async def _all(self, sql: str, parameters: Sequence[object], convert: Callable[[sqlite3.Row], _T]) -> list[_T]:
        return await self._run(lambda connection: [convert(row) for row in connection.execute(sql, parameters)])

    async def __aenter__(self) -> Self:
        await _wait(self._opened)
        return self

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await _wait(self._executor.submit(self._close))
        finally:
            self._executor.shutdown(wait=True)  # its queue is empty by now: this only joins an idle thread

    async def create_job(
        self, kind: JobKind, request: JSONObject, *, poll_interval_ms: int = DEFAULT_POLL_INTERVAL_MS
    ) -> Job:
        if kind not in get_args(JobKind):
            raise ValueError(f"kind must be one of {get_args(JobKind)}")
        job_id = f"job_{secrets.token_hex(8)}"
        encoded = _dumps(request)  # here, so that a value JSON cannot hold fails in the caller

        def write(connection: sqlite3.Connection) -> Job:
            now = _stamp()
            with _transaction(connection):
                connection.execute(
                    "INSERT INTO jobs (id, kind, status, owner, request, created_at, updated_at, poll_interval_ms) "
                    "VALUES (?, ?, 'queued', ?, ?, ?, ?, ?)",
                    (job_id, kind, self.owner, encoded, now, now, poll_interval_ms),
                )
            return self._require_job(connection, job_id)

        return await self._run(write)

    async def mark_running(self, job_id: str) -> None:
        def write(connection: sqlite3.Connection) -> None:
            now = _stamp()
            with _transaction(connection):
                changed = connection.execute(
                    "UPDATE jobs SET status = 'running', started_at = ?, updated_at = ? "
                    "WHERE id = ? AND status = 'queued'",
                    (now, now, job_id),
                ).rowcount
                if not changed:
                    self._require_job(connection, job_id, expected="queued")

        await self._run(write)

    async def update_progress(self, job_id: str, progress: float, message: str | None = None) -> None:
        if not 0 <= progress <= 1:
            raise ValueError("progress is a fraction between 0 and 1")
        with self._progress_lock:
            self._pending_progress[job_id] = (progress, message, _stamp())
            if self._progress_flush is None:
                self._progress_flush = self._submit(self._write_progress)
            flush = self._progress_flush
        await _wait(flush)

    async def add_images(self, job_id: str, images: Sequence[NewImage]) -> None:
        _check_images(images)

        def write(connection: sqlite3.Connection) -> None:
            with _transaction(connection):
                job = self._require_job(connection, job_id)
                if job.finished:
                    raise JobStateError(f"job {job_id} is {job.status}, not queued or running")
                _insert_images(connection, job_id, images)

        await self._run(write)

    async def finish_job(self, job_id: str, finish: Finish) -> Job:
        outcome = finish.outcome
        if isinstance(outcome, Succeeded):
            status, result, error, images, progress = "succeeded", _dumps(outcome.result), None, outcome.images, 1.0
        else:
            status = "failed" if isinstance(outcome, Failed) else "cancelled"
            result, images, progress = None, (), None
            error = None if outcome.error is None else _dumps(outcome.error)
        _check_images(images)
        values = (status, result, error, finish.provider, finish.model, finish.cost_usd)
        attempts = _dumps(list(finish.attempts))

        def write(connection: sqlite3.Connection) -> Job:
            now = _stamp()
            with _transaction(connection):
                changed = connection.execute(
                    "UPDATE jobs SET status = ?, result = ?, error = ?, provider = ?, model = ?, cost_usd = ?, "
                    "attempts = ?, progress = coalesce(?, progress), finished_at = ?, updated_at = ? "
                    "WHERE id = ? AND status IN ('queued', 'running')",
                    (*values, attempts, progress, now, now, job_id),
                ).rowcount
                if not changed:
                    self._require_job(connection, job_id, expected="queued or running")
                _insert_images(connection, job_id, images)
            return self._require_job(connection, job_id)

        return await self._run(write)

    async def get_job(self, job_id: str) -> Job | None:
        if not JOB_ID_PATTERN.match(job_id):
            return None
        return await self._one(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,), _job_from)

    async def recent_jobs(self, limit: int = 20) -> list[Job]:
        _check_limit(limit)
        sql = f"SELECT {_JOB_COLUMNS} FROM jobs ORDER BY created_at DESC, rowid DESC LIMIT ?"
        return await self._all(sql, (limit,), _job_from)

    async def recent_generations(self, limit: int = 20, *, include_deleted: bool = False) -> list[Generation]:
        _check_limit(limit)
        sql = (
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE status = 'succeeded' ORDER BY finished_at DESC, rowid DESC LIMIT ?"
        )

        def read(connection: sqlite3.Connection) -> list[Generation]:
            jobs = [_job_from(row) for row in connection.execute(sql, (limit,))]
            images = _images_of(connection, [job.id for job in jobs], include_deleted)
            return [Generation(job, images.get(job.id, [])) for job in jobs]

        return await self._run(read)

    async def get_generation(self, job_id: str, *, include_deleted: bool = False) -> Generation | None:
        if not JOB_ID_PATTERN.match(job_id):
            return None

        def read(connection: sqlite3.Connection) -> Generation | None:
            row = connection.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                return None
            return Generation(_job_from(row), _images_of(connection, [job_id], include_deleted).get(job_id, []))

        return await self._run(read)

    async def mark_interrupted_at_start(self) -> int:
        def write(connection: sqlite3.Connection) -> int:
            owners = connection.execute(
                "SELECT DISTINCT owner FROM jobs WHERE status IN ('queued', 'running') AND owner != ?", (self.owner,)
            ).fetchall()
            # An owner with unfinished jobs has finished opening, so a free lock means it has ended.
            gone = [owner for (owner,) in owners if not _is_held(self._owners / f"{owner}.lock")]
            now = _stamp()
            with _transaction(connection):
                count = sum(connection.execute(_INTERRUPT, (now, now, owner)).rowcount for owner in gone)
            _sweep_lock_files(self._owners, self._lock_file)
            return count

        return await self._run(write)

    async def search_images(
        self,
        query: str | None = None,
        *,
        provider: str | None = None,
        model: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 20,
        include_deleted: bool = False,
    ) -> list[ImageRecord]:
        _check_limit(limit)
        conditions: list[str] = []
        parameters: list[object] = []
        if query is None:
            source, order = "images", "images.seq"
        else:
            expression = match_expression(query)
            if expression is None:
                return []
            # CROSS JOIN keeps the FTS index the outer loop, read newest first, so that LIMIT stops it early.
            source, order = "images_fts CROSS JOIN images ON images.seq = images_fts.rowid", "images_fts.rowid"
            conditions.append("images_fts MATCH ?")
            parameters.append(expression)
        for condition, value in (
            ("images.provider = ?", provider),
            ("images.model = ?", model),
            ("images.created_at >= ?", None if since is None else _stamp(since)),
            ("images.created_at < ?", None if until is None else _stamp(until)),
        ):
            if value is not None:
                conditions.append(condition)
                parameters.append(value)
        if not include_deleted:
            conditions.append("images.deleted_at IS NULL")
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        sql = f"SELECT {_IMAGE_COLUMNS} FROM {source} {where} ORDER BY {order} DESC LIMIT ?"
        return await self._all(sql, (*parameters, limit), _image_from)

    async def get_image(self, image_id: str) -> ImageRecord | None:
        if not IMAGE_ID_PATTERN.match(image_id):
            return None
        return await self._one(f"SELECT {_IMAGE_COLUMNS} FROM images WHERE image_id = ?", (image_id,), _image_from)

    async def delete_image(self, image_id: str) -> ImageRecord | None:
        if not IMAGE_ID_PATTERN.match(image_id):
            return None

        def write(connection: sqlite3.Connection) -> ImageRecord | None:
            with _transaction(connection):
                connection.execute(
                    "UPDATE images SET deleted_at = ? WHERE image_id = ? AND deleted_at IS NULL", (_stamp(), image_id)
                )
                row = connection.execute(
                    f"SELECT {_IMAGE_COLUMNS} FROM images WHERE image_id = ?", (image_id,)
                ).fetchone()
            return None if row is None else _image_from(row)

        return await self._run(write)

    async def parents_of(self, image_id: str) -> list[LinkedImage]:
        sql = (
            f"SELECT image_parents.parent_id AS linked, image_parents.role, {_IMAGE_COLUMNS} FROM image_parents "
            "LEFT JOIN images ON images.image_id = image_parents.parent_id "
            "WHERE image_parents.image_id = ? ORDER BY image_parents.position"
        )
        return await self._all(sql, (image_id,), _linked_from)

    async def children_of(self, image_id: str) -> list[LinkedImage]:
        sql = (
            f"SELECT image_parents.image_id AS linked, image_parents.role, {_IMAGE_COLUMNS} FROM image_parents "
            "JOIN images ON images.image_id = image_parents.image_id "
            "WHERE image_parents.parent_id = ? ORDER BY images.seq, image_parents.position"
        )
        return await self._all(sql, (image_id,), _linked_from)

    async def spend(
        self, since: datetime, until: datetime | None = None, *, provider: str | None = None
    ) -> dict[str, ProviderSpend]:
        conditions = ["finished_at >= ?", "provider IS NOT NULL", "(status = 'succeeded' OR cost_usd IS NOT NULL)"]
        parameters: list[object] = [_stamp(since)]
        if until is not None:
            conditions.append("finished_at < ?")
            parameters.append(_stamp(until))
        if provider is not None:
            conditions.append("provider = ?")
            parameters.append(provider)
        sql = (
            "SELECT provider, total(cost_usd), sum(cost_usd IS NULL), sum(status = 'succeeded') FROM jobs "
            f"WHERE {' AND '.join(conditions)} GROUP BY provider ORDER BY provider"
        )
        return {spend.provider: spend for spend in await self._all(sql, parameters, _spend_from)}

    async def integrity_check(self) -> list[str]:
        def check(connection: sqlite3.Connection) -> list[str]:
            problems = [row[0] for row in connection.execute("PRAGMA integrity_check") if row[0] != "ok"]
            problems += [
                f"{row[0]} row {row[1]}: no {row[2]} row it refers to"
                for row in connection.execute("PRAGMA foreign_key_check")
            ]
            try:  # with rank 1, FTS5 also compares its index with the images table
                connection.execute("INSERT INTO images_fts (images_fts, rank) VALUES ('integrity-check', 1)")
            except sqlite3.DatabaseError as exc:
                problems.append(f"the search index does not match the images: {exc}")
            return problems

        return await self._run(check)


def _insert_images(connection: sqlite3.Connection, job_id: str, images: Sequence[NewImage]) -> None:
    now = _stamp()
    connection.executemany(
        "INSERT INTO images (image_id, job_id, path, uri, prompt, negative_prompt, provider, model, seed, "
        "width, height, cost_usd, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                image.image_id,
                job_id,
                str(image.path),
                image.uri,
                image.prompt,
                image.negative_prompt,
                image.provider,
                image.model,
                image.seed,
                image.width,
                image.height,
                image.cost_usd,
                now,
            )
            for image in images
        ],
    )
    connection.executemany(
        "INSERT INTO image_parents (image_id, position, parent_id, role) VALUES (?, ?, ?, ?)",
        [
            (image.image_id, position, parent.image_id, parent.role)
            for image in images
            for position, parent in enumerate(image.parents)
        ],
    )


def _images_of(
    connection: sqlite3.Connection, job_ids: Sequence[str], include_deleted: bool
) -> dict[str, list[ImageRecord]]:
    found: dict[str, list[ImageRecord]] = {}
    if not job_ids:
        return found
    marks = ", ".join("?" * len(job_ids))
    deleted = "" if include_deleted else "AND deleted_at IS NULL"
    for row in connection.execute(
        f"SELECT {_IMAGE_COLUMNS} FROM images WHERE job_id IN ({marks}) {deleted} ORDER BY seq", job_ids
    ):
        found.setdefault(row["job_id"], []).append(_image_from(row))
    return found


async def _wait(future: Future[_T]) -> _T:
    """Await work on the worker thread. Cancelling the caller ends its wait, never the work: the work may be
    shared (coalesced progress is), and a write either happens whole or, if it fails, not at all."""
    return await asyncio.shield(asyncio.wrap_future(future))
