from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import anyio
import pytest

from imagegen_mcp.config import default_output_dir
from imagegen_mcp.history import (
    JOB_ID_PATTERN,
    MIGRATIONS,
    Cancelled,
    Failed,
    Finish,
    HistoryError,
    JobStateError,
    NewImage,
    Parent,
    SQLiteHistory,
    Succeeded,
    UnknownJobError,
    default_db_path,
    match_expression,
    split_statements,
)
from imagegen_mcp.storage import URI_PREFIX, new_image_id

pytestmark = pytest.mark.anyio


def new_image(
    prompt: str, *, provider: str = "runware", model: str = "juggernaut_pro", parents: Sequence[Parent] = ()
) -> NewImage:
    image_id = new_image_id()
    return NewImage(
        image_id=image_id,
        path=Path(f"/images/{image_id}.png"),
        uri=URI_PREFIX + image_id,
        prompt=prompt,
        provider=provider,
        model=model,
        width=1024,
        height=768,
        seed=42,
        parents=parents,
    )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteHistory]:
    async with SQLiteHistory(tmp_path / "history.sqlite3") as history:
        yield history


async def generate(
    store: SQLiteHistory, *prompts: str, provider: str = "runware", cost: float | None = 0.01
) -> list[NewImage]:
    """One succeeded job with an image per prompt."""
    images = [new_image(prompt, provider=provider) for prompt in prompts]
    job = await store.create_job("generate", {"prompt": prompts[0]})
    await store.mark_running(job.id)
    await store.finish_job(
        job.id, Finish(Succeeded({"images": len(images)}, images), provider=provider, model="m", cost_usd=cost)
    )
    return images


async def test_a_job_goes_from_queued_to_succeeded_with_its_images(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    async with SQLiteHistory(path) as store:
        job = await store.create_job("generate", {"prompt": "a lighthouse", "n": 2}, poll_interval_ms=500)
        assert JOB_ID_PATTERN.match(job.id)
        assert (job.status, job.progress, job.started_at, job.result, job.cost_usd) == ("queued", 0, None, None, None)
        assert job.request == {"prompt": "a lighthouse", "n": 2} and job.poll_interval_ms == 500
        assert job.created_at.tzinfo is not None

        await store.mark_running(job.id)
        await store.update_progress(job.id, 0.25, "step 1 of 4")
        running = await store.get_job(job.id)
        assert running is not None and running.status == "running" and running.started_at is not None
        assert (running.progress, running.progress_message) == (0.25, "step 1 of 4")

        images = [new_image("a lighthouse"), new_image("a lighthouse")]
        attempts = [{"provider": "gemini", "outcome": "failed"}, {"provider": "runware", "outcome": "succeeded"}]
        finished = await store.finish_job(
            job.id,
            Finish(Succeeded({"ok": True}, images), provider="runware", model="m", cost_usd=0.02, attempts=attempts),
        )
        assert (finished.status, finished.progress, finished.result, finished.error) == (
            "succeeded",
            1.0,
            {"ok": True},
            None,
        )
        assert (finished.provider, finished.model, finished.cost_usd, finished.attempts) == (
            "runware",
            "m",
            0.02,
            attempts,
        )
        assert finished.created_at <= finished.started_at <= finished.finished_at  # type: ignore[operator]

    async with SQLiteHistory(path) as reopened:
        assert await reopened.get_job(job.id) == finished
        generation = await reopened.get_generation(job.id)
        assert generation is not None and generation.job == finished
        assert [(i.image_id, i.uri, i.seed, i.width, i.height) for i in generation.images] == [
            (i.image_id, i.uri, 42, 1024, 768) for i in images
        ]


async def test_failures_cancellations_and_wrong_transitions(store: SQLiteHistory) -> None:
    failed = await store.create_job("edit", {"instruction": "make it blue"})
    await store.mark_running(failed.id)
    error = {"code": "content_blocked", "message": "blocked", "retryable": False}
    done = await store.finish_job(failed.id, Finish(Failed(error), provider="gemini", model="g"))
    assert (done.status, done.error, done.result, done.progress) == ("failed", error, None, 0)

    cancelled = await store.create_job("generate", {"prompt": "x"})
    done = await store.finish_job(cancelled.id, Finish(Cancelled()))
    assert (done.status, done.error, done.started_at) == ("cancelled", None, None)

    with pytest.raises(JobStateError, match="cancelled"):
        await store.mark_running(cancelled.id)
    with pytest.raises(JobStateError, match="failed"):
        await store.finish_job(failed.id, Finish(Succeeded({}, [new_image("late")])))
    assert await store.search_images("late") == []  # the refused finish recorded nothing
    with pytest.raises(JobStateError):
        await store.add_images(failed.id, [new_image("late")])
    with pytest.raises(UnknownJobError):
        await store.mark_running("job_0000000000000000")
    with pytest.raises(UnknownJobError):
        await store.finish_job("job_0000000000000000", Finish(Cancelled()))
    assert await store.get_job("job_0000000000000000") is None
    assert await store.get_job("../etc/passwd") is None
    assert await store.get_generation("nope") is None
    assert await store.recent_generations() == []  # neither job succeeded
    assert [job.id for job in await store.recent_jobs()] == [cancelled.id, failed.id]


async def test_request_must_be_json(store: SQLiteHistory) -> None:
    with pytest.raises(TypeError):
        await store.create_job("generate", {"prompt": {1, 2}})
    with pytest.raises(ValueError):
        await store.create_job("generate", {"strength": float("nan")})
    with pytest.raises(ValueError, match="kind"):
        await store.create_job("upscale", {})  # type: ignore[arg-type]
    assert await store.recent_jobs() == []


async def test_progress_updates_coalesce_and_ignore_finished_jobs(store: SQLiteHistory) -> None:
    job = await store.create_job("generate", {"prompt": "x"})
    await store.mark_running(job.id)
    # The connection's count of changed rows tells how many progress writes reached the database.
    changes_before = await store._run(lambda connection: connection.total_changes)
    async with anyio.create_task_group() as group:
        for step in range(1, 101):
            group.start_soon(store.update_progress, job.id, step / 100, f"step {step}")
    writes = await store._run(lambda connection: connection.total_changes) - changes_before
    current = await store.get_job(job.id)
    assert current is not None and (current.progress, current.progress_message) == (1.0, "step 100")
    assert 1 <= writes < 50

    await store.finish_job(job.id, Finish(Failed({"code": "provider_error"})))
    await store.update_progress(job.id, 0.5, "too late")
    await store.update_progress("job_0000000000000000", 0.5)
    after = await store.get_job(job.id)
    assert after is not None and (after.status, after.progress_message) == ("failed", "step 100")
    with pytest.raises(ValueError):
        await store.update_progress(job.id, 1.5)


async def test_search_matches_words_and_a_prefix_newest_first(store: SQLiteHistory) -> None:
    lighthouse = await generate(store, "A red lighthouse at dusk, oil painting")
    cafe = await generate(store, "a quiet Café in Paris", provider="gemini")
    cat = await generate(store, "a red cat asleep on a windowsill", "a red cat on a lighthouse")

    async def found(query: str | None, **filters: object) -> list[str]:
        return [record.image_id for record in await store.search_images(query, **filters)]  # type: ignore[arg-type]

    assert await found("red") == [cat[1].image_id, cat[0].image_id, lighthouse[0].image_id]
    assert await found("red lighthouse") == [cat[1].image_id, lighthouse[0].image_id]
    assert await found("light") == [cat[1].image_id, lighthouse[0].image_id]  # the last word is a prefix
    assert await found("lig red") == []  # only the last: "lig" is a whole word here
    assert await found("cafe PARIS") == await found("café paris") == [cafe[0].image_id]
    assert await found("cats") == []  # no stemming
    assert await found("red", provider="gemini") == []
    assert await found(None, provider="gemini") == [cafe[0].image_id]
    assert await found("red", limit=1) == [cat[1].image_id]
    assert await found(None, model="juggernaut_pro", limit=2) == [cat[1].image_id, cat[0].image_id]

    record = (await store.search_images("windowsill"))[0]
    assert (record.prompt, record.provider, record.model, record.seed, record.width, record.height) == (
        "a red cat asleep on a windowsill",
        "runware",
        "juggernaut_pro",
        42,
        1024,
        768,
    )
    assert record.uri == URI_PREFIX + record.image_id and record.deleted_at is None


async def test_search_by_time(store: SQLiteHistory) -> None:
    early = await generate(store, "an early boat")
    boundary = datetime.now(UTC)
    late = await generate(store, "a late boat")
    assert [r.image_id for r in await store.search_images("boat", since=boundary)] == [late[0].image_id]
    assert [r.image_id for r in await store.search_images("boat", until=boundary)] == [early[0].image_id]
    in_tokyo = boundary.astimezone(timezone(timedelta(hours=9)))
    assert [r.image_id for r in await store.search_images(None, since=in_tokyo)] == [late[0].image_id]
    with pytest.raises(ValueError, match="naive"):
        await store.search_images("boat", since=datetime.now())


@pytest.mark.parametrize(
    "query",
    [
        'cat"',
        '"',
        "NOT",
        "cat NOT dog",
        "AND OR",
        "NEAR(cat dog)",
        "cat*",
        "*",
        "^cat",
        "prompt:cat",
        "(cat",
        "cat)",
        "{prompt}: cat",
        "cat + dog",
        "-cat",
        "'",
        "a''b",
        "\x00",
        "c\u0301at",
        "🙂 cat",
        "\\",
    ],
)
async def test_no_user_text_is_an_fts_syntax_error(store: SQLiteHistory, query: str) -> None:
    await generate(store, 'a "cat" NOT a dog (NEAR the house) + more')
    await store.search_images(query)  # must not raise


def test_match_expression_quotes_every_word() -> None:
    assert match_expression('red "lighthouse') == '"red" """lighthouse"*'
    assert match_expression("  !!! ... ") is None
    assert match_expression("NEAR(a b)") == '"NEAR(a" "b)"*'


async def test_a_query_without_words_matches_nothing(store: SQLiteHistory) -> None:
    await generate(store, "a red lighthouse")
    assert await store.search_images("!!! ...") == []
    with pytest.raises(ValueError, match="limit"):
        await store.search_images("red", limit=0)


async def test_deleting_an_image_hides_it_and_returns_its_row(store: SQLiteHistory) -> None:
    kept, deleted = await generate(store, "a green apple", "a green pear")
    row = await store.delete_image(deleted.image_id)
    assert row is not None and row.image_id == deleted.image_id and row.path == deleted.path
    assert row.deleted_at is not None
    again = await store.delete_image(deleted.image_id)
    assert again is not None and again.deleted_at == row.deleted_at
    assert await store.delete_image(new_image_id()) is None
    assert await store.delete_image("../../secret") is None

    assert [r.image_id for r in await store.search_images("green")] == [kept.image_id]
    assert [r.image_id for r in await store.search_images("green", include_deleted=True)] == [
        deleted.image_id,
        kept.image_id,
    ]
    (generation,) = await store.recent_generations()
    assert [i.image_id for i in generation.images] == [kept.image_id]
    everything = await store.get_generation(generation.job.id, include_deleted=True)
    assert everything is not None and [i.image_id for i in everything.images] == [kept.image_id, deleted.image_id]
    assert await store.get_image(deleted.image_id) == again


async def test_lineage_both_ways(store: SQLiteHistory) -> None:
    (source,) = await generate(store, "a plain room")
    (mask,) = await generate(store, "a mask")
    outside = new_image_id()  # an input the history has no row for
    edit = await store.create_job("edit", {"instruction": "add a sofa"})
    edited = new_image(
        "add a sofa",
        parents=[Parent(source.image_id, "image"), Parent(mask.image_id, "mask"), Parent(outside, "reference")],
    )
    await store.finish_job(edit.id, Finish(Succeeded({}, [edited])))

    parents = await store.parents_of(edited.image_id)
    assert [(p.image_id, p.role) for p in parents] == [
        (source.image_id, "image"),
        (mask.image_id, "mask"),
        (outside, "reference"),
    ]
    assert parents[0].image is not None and parents[0].image.prompt == "a plain room"
    assert parents[2].image is None
    children = await store.children_of(source.image_id)
    assert [(c.image_id, c.role) for c in children] == [(edited.image_id, "image")]
    assert children[0].image is not None and children[0].image.job_id == edit.id
    assert [(c.image_id, c.role) for c in await store.children_of(mask.image_id)] == [(edited.image_id, "mask")]
    assert await store.children_of(edited.image_id) == []
    assert await store.parents_of(source.image_id) == []
    with pytest.raises(ValueError, match="image id"):
        await store.add_images(edit.id, [new_image("x", parents=[Parent("not-an-id", "image")])])


async def test_spend_per_provider_within_boundaries(store: SQLiteHistory) -> None:
    before = datetime.now(UTC)
    await generate(store, "one", cost=0.25)
    await generate(store, "two", cost=0.5)
    await generate(store, "three", cost=None)
    await generate(store, "four", provider="flux_local", cost=0.0)
    charged = await store.create_job("generate", {})
    await store.finish_job(charged.id, Finish(Failed({"code": "provider_error"}), provider="gemini", cost_usd=0.04))
    free = await store.create_job("generate", {})
    await store.finish_job(free.id, Finish(Failed({"code": "provider_error"}), provider="gemini"))
    after = datetime.now(UTC)

    spend = await store.spend(before, after)
    assert sorted(spend) == ["flux_local", "gemini", "runware"]
    runware = spend["runware"]
    assert (runware.known_cost_usd, runware.unknown_cost_generations, runware.generations) == (0.75, 1, 3)
    assert (spend["flux_local"].known_cost_usd, spend["flux_local"].unknown_cost_generations) == (0.0, 0)
    gemini = spend["gemini"]
    assert (gemini.known_cost_usd, gemini.unknown_cost_generations, gemini.generations) == (0.04, 0, 0)

    assert list(await store.spend(before, provider="gemini")) == ["gemini"]
    assert await store.spend(after) == {}
    assert await store.spend(before - timedelta(days=1), before) == {}
    local_midnight = before.astimezone(timezone(timedelta(hours=-5)))
    assert await store.spend(local_midnight) == spend


async def test_images_recorded_while_running_survive_an_interruption(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    first = SQLiteHistory(path)
    job = await first.create_job("generate", {"prompt": "a slow one"})
    await first.mark_running(job.id)
    saved = new_image("a slow one")
    await first.add_images(job.id, [saved])

    async with SQLiteHistory(path) as second:
        # Another process that is still open: its running job is left alone.
        assert await second.mark_interrupted_at_start() == 0
        still = await second.get_job(job.id)
        assert still is not None and still.status == "running"
        await first.aclose()  # a store that closes interrupts its own unfinished jobs
        generation = await second.get_generation(job.id)
        assert generation is not None and generation.job.status == "interrupted"
        assert generation.job.finished_at is not None
        assert [i.image_id for i in generation.images] == [saved.image_id]
        assert [r.image_id for r in await second.search_images("slow")] == [saved.image_id]


CHILD = """
import sys
from pathlib import Path

import anyio

from imagegen_mcp.history import Finish, NewImage, SQLiteHistory, Succeeded
from imagegen_mcp.storage import URI_PREFIX, new_image_id


def image(prompt):
    image_id = new_image_id()
    return NewImage(image_id, Path(image_id + ".png"), URI_PREFIX + image_id, prompt, "runware", "m", 64, 64)


BATCH = 50


async def main(path):
    history = await SQLiteHistory(Path(path)).__aenter__()  # never closed: this process is killed
    parked = await history.create_job("generate", {"prompt": "parked"})
    await history.mark_running(parked.id)
    await history.add_images(parked.id, [image("parked")])
    print(parked.id, flush=True)
    n = 0
    while True:
        job = await history.create_job("generate", {"prompt": f"job {n}"})
        await history.mark_running(job.id)
        await history.update_progress(job.id, 0.5, "halfway")
        await history.add_images(job.id, [image(f"first {n}")])
        images = [image(f"batch {n}") for _ in range(BATCH)]  # a long transaction, likely to be cut
        finish = Finish(Succeeded({"n": n}, images), provider="runware", model="m", cost_usd=0.01)
        await history.finish_job(job.id, finish)
        print(n, flush=True)
        n += 1


anyio.run(main, sys.argv[1])
"""


def run_and_kill(path: Path, jobs: int, delay_s: float) -> str:
    """Start a writer process, SIGKILL it in the middle of its stream of writes, return its parked job's id."""
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    parked = child.stdout.readline().strip()
    for _ in range(jobs):
        assert child.stdout.readline(), "the writer died on its own"
    time.sleep(delay_s)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    child.stdout.close()
    return parked


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_a_killed_writer_leaves_a_readable_history(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    for round_, delay_s in enumerate((0.0, 0.002, 0.005)):  # killed at different points of a job's writes
        parked = run_and_kill(path, jobs=10, delay_s=delay_s)
        with sqlite3.connect(path) as raw:
            assert raw.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        anyio.run(check_after_kill, path, parked, round_)
    owners = path.with_name(path.name + ".owners")
    assert len(list(owners.iterdir())) == 3  # the killed writers' files, kept while young
    for lock_file in owners.iterdir():
        os.utime(lock_file, (time.time() - 3600, time.time() - 3600))
    anyio.run(sweep, path)
    assert list(owners.iterdir()) == []


async def sweep(path: Path) -> None:
    async with SQLiteHistory(path) as store:
        assert await store.mark_interrupted_at_start() == 0


async def check_after_kill(path: Path, parked: str, round_: int) -> None:
    async with SQLiteHistory(path) as store:
        assert await store.integrity_check() == []
        jobs = await store.recent_jobs(limit=1000)
        unfinished = 0
        for job in jobs:
            generation = await store.get_generation(job.id)
            assert generation is not None
            count = len(generation.images)
            if job.status == "succeeded":
                assert job.result is not None and job.finished_at is not None and job.progress == 1.0
                assert count == 51 and job.cost_usd == 0.01
            elif job.status == "interrupted":  # by the check after an earlier round
                assert job.result is None
            else:
                assert job.status in ("queued", "running") and job.result is None and job.finished_at is None
                assert count <= (1 if job.status == "running" else 0)
                unfinished += 1
        assert unfinished >= 1  # at least the parked job
        assert await store.mark_interrupted_at_start() == unfinished
        generation = await store.get_generation(parked)
        assert generation is not None and generation.job.status == "interrupted"
        assert [image.prompt for image in generation.images] == ["parked"]
        assert len(await store.search_images("parked")) == round_ + 1
        assert await store.mark_interrupted_at_start() == 0


async def test_fifty_concurrent_jobs_are_each_recorded_once(store: SQLiteHistory) -> None:
    ids: list[str] = []

    async def one(index: int) -> None:
        job = await store.create_job("generate", {"prompt": f"concurrent {index}"})
        ids.append(job.id)
        await store.mark_running(job.id)
        await store.update_progress(job.id, 0.5)
        await store.finish_job(job.id, Finish(Succeeded({"index": index}, [new_image(f"concurrent {index}")])))

    async with anyio.create_task_group() as group:
        for index in range(50):
            group.start_soon(one, index)

    jobs = await store.recent_jobs(limit=100)
    assert sorted(job.id for job in jobs) == sorted(ids) and len(set(ids)) == 50
    assert all(job.status == "succeeded" for job in jobs)
    assert sorted(job.result["index"] for job in jobs if job.result) == list(range(50))
    images = await store.search_images("concurrent", limit=100)
    assert sorted(image.job_id for image in images) == sorted(ids)
    assert len(await store.recent_generations(limit=100)) == 50
    assert await store.integrity_check() == []


@contextlib.contextmanager
def write_lock_held(path: Path, seconds: float) -> Iterator[None]:
    """Another connection (as another process would) holds the write lock for ``seconds``."""
    blocker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    blocker.execute("BEGIN IMMEDIATE")
    release = threading.Timer(seconds, blocker.execute, ("COMMIT",))
    release.start()
    try:
        yield
    finally:
        release.join()
        blocker.close()


async def test_a_cancelled_caller_does_not_cancel_its_write(store: SQLiteHistory) -> None:
    job = await store.create_job("generate", {"prompt": "x"})
    with write_lock_held(store.path, 0.3):
        async with anyio.create_task_group() as group:
            group.start_soon(store.create_job, "generate", {})  # the worker waits for the lock with it
            await anyio.sleep(0.05)
            with anyio.CancelScope() as scope:
                scope.cancel()
                await store.finish_job(job.id, Finish(Cancelled({"code": "cancelled"})))  # queued behind it
    assert scope.cancelled_caught
    finished = await store.get_job(job.id)
    assert finished is not None and finished.status == "cancelled" and finished.error == {"code": "cancelled"}


async def test_a_locked_database_never_blocks_the_event_loop(store: SQLiteHistory) -> None:
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await anyio.sleep(0.01)
            ticks += 1

    with write_lock_held(store.path, 0.3):
        async with anyio.create_task_group() as group:
            group.start_soon(tick)
            started = time.monotonic()
            job = await store.create_job("generate", {"prompt": "waited"})
            waited = time.monotonic() - started
            group.cancel_scope.cancel()
    assert waited >= 0.25 and ticks >= 10
    assert (await store.get_job(job.id)) is not None


async def test_connection_settings_and_its_own_thread(store: SQLiteHistory) -> None:
    def settings(connection: sqlite3.Connection) -> tuple[object, ...]:
        pragmas = ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
        values = tuple(connection.execute(f"PRAGMA {name}").fetchone()[0] for name in pragmas)
        return (*values, threading.current_thread().name)

    journal, synchronous, foreign_keys, busy, thread = await store._run(settings)
    assert (journal, synchronous, foreign_keys, busy) == ("wal", 1, 1, 5000)  # synchronous 1 is NORMAL
    assert str(thread).startswith("imagegen-history") and thread != threading.current_thread().name


async def test_aclose_ends_the_thread_and_refuses_later_calls(tmp_path: Path) -> None:
    store = SQLiteHistory(tmp_path / "history.sqlite3")
    await store.create_job("generate", {})
    await store.aclose()
    await store.aclose()
    assert not [thread for thread in threading.enumerate() if thread.name.startswith("imagegen-history")]
    assert list((tmp_path / "history.sqlite3.owners").iterdir()) == []
    with pytest.raises(HistoryError, match="closed"):
        await store.recent_jobs()


async def test_a_store_that_cannot_open_says_so_on_first_use(tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    store = SQLiteHistory(tmp_path / "taken")
    with pytest.raises(HistoryError, match="Cannot open the history database"):
        await store.get_job("job_0000000000000000")
    await store.aclose()


async def test_migrations_run_in_order_from_the_stored_version(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    async with SQLiteHistory(path) as store:
        job = await store.create_job("generate", {"prompt": "from version 1"})
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone() == (1,)

    broken = "ALTER TABLE jobs ADD COLUMN half TEXT; SELECT no_such_function();"
    with pytest.raises(HistoryError, match="no_such_function"):
        async with SQLiteHistory(path, migrations=(*MIGRATIONS, broken)):
            pass
    with sqlite3.connect(path) as raw:  # the failed step left nothing behind
        assert raw.execute("PRAGMA user_version").fetchone() == (1,)
        assert "half" not in [column[1] for column in raw.execute("PRAGMA table_info(jobs)")]

    version_2 = "ALTER TABLE jobs ADD COLUMN note TEXT;\nUPDATE jobs SET note = 'migrated'"
    async with SQLiteHistory(path, migrations=(*MIGRATIONS, version_2)) as store:
        kept = await store.get_job(job.id)
        assert kept is not None and kept.request == {"prompt": "from version 1"}
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone() == (2,)
        assert raw.execute("SELECT note FROM jobs").fetchall() == [("migrated",)]

    with pytest.raises(HistoryError, match="newer"):
        async with SQLiteHistory(path):
            pass


def test_split_statements_keeps_trigger_bodies_whole() -> None:
    script = (
        "CREATE TABLE a (x); CREATE TABLE b (y);\nCREATE TRIGGER t AFTER INSERT ON a BEGIN SELECT 1; SELECT 2; END;"
    )
    statements = split_statements(script + "\nSELECT 3")
    assert statements == ["CREATE TABLE a (x);", "CREATE TABLE b (y);", script.split("\n")[1], "SELECT 3"]
    triggers = [statement for statement in split_statements(MIGRATIONS[0]) if "CREATE TRIGGER" in statement]
    assert len(triggers) == 3 and all(trigger.endswith("END;") for trigger in triggers)


def test_default_database_lives_beside_the_images() -> None:
    assert default_db_path().name == "history.sqlite3"
    assert default_db_path().parent == default_output_dir().parent
