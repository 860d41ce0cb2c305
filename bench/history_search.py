"""History store: what a call's history writes cost, and searching 100,000 recorded images.

    python -m bench.history_search [--rows 100000] [--rounds 7]

Writes: one call's records (create_job + mark_running + finish_job with one image) timed as the caller's
await, one call after another, and as the wall time of 16 concurrent calls divided by 16; on a new database
and again on the filled one. Search: queries over ``--rows`` images with varied prompts built from word
lists, recorded through the store's own API in jobs of one to four images. Each figure is the median of
``--rounds`` rounds (each round itself a median), with the lowest and highest round beside it.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio

from bench.common import machine, median_ms, table
from imagegen_mcp.history import Finish, NewImage, SQLiteHistory, Succeeded
from imagegen_mcp.storage import URI_PREFIX, new_image_id

# fmt: off
ADJECTIVES = [
    "red", "blue", "golden", "misty", "ancient", "futuristic", "quiet", "stormy", "tiny", "giant", "neon", "rusty",
    "frozen", "glowing", "abandoned", "serene", "colorful", "dark", "bright", "wooden", "crystal", "floating",
    "hidden", "crowded", "lonely", "vintage", "majestic", "sleepy", "wild", "elegant", "gloomy", "sunny", "icy",
    "velvet", "marble", "copper", "emerald", "crimson", "silver", "ivory",
]
SUBJECTS = [
    "lighthouse", "fox", "cat", "dragon", "castle", "robot", "astronaut", "forest", "city", "garden", "owl",
    "whale", "mountain", "village", "bridge", "library", "train", "tiger", "portrait", "samurai", "wizard",
    "cottage", "river", "waterfall", "desert", "spaceship", "market", "cafe", "violin", "knight", "deer", "octopus",
    "temple", "harbor", "windmill", "greenhouse", "bicycle", "teapot", "phoenix", "jellyfish", "wolf", "fisherman",
    "balloon", "submarine", "canyon", "orchard", "tram", "monastery",
]
SETTINGS = [
    "at dusk", "at dawn", "in the rain", "under the stars", "in a snowstorm", "on a hill", "by the sea",
    "in a busy street", "inside a cave", "on the moon", "in autumn", "in spring bloom", "at midnight", "in the fog",
    "on a rooftop", "in a meadow", "beside a lake", "in a jungle", "on a frozen lake", "in a cyberpunk alley",
]
STYLES = [
    "oil painting", "watercolor", "photorealistic", "35mm film photo", "digital art", "pencil sketch",
    "isometric render", "studio ghibli style", "ukiyo-e woodblock", "art nouveau poster", "low poly 3d",
    "cinematic still", "pixel art", "charcoal drawing", "gouache illustration", "tilt-shift photo",
]
LIGHTING = [
    "soft light", "golden hour", "volumetric light", "rim lighting", "moody shadows", "high contrast", "pastel tones",
    "dramatic sky", "bokeh", "long exposure",
]
# fmt: on
MODELS = {"runware": ("juggernaut_pro", "flux_schnell", "flux_dev"), "flux_local": ("sdxl",), "gemini": ("flash",)}
ADJECTIVE_WEIGHTS = [1 / rank for rank in range(1, len(ADJECTIVES) + 1)]  # as word frequencies fall
SUBJECT_WEIGHTS = [1 / rank for rank in range(1, len(SUBJECTS) + 1)]
PROVIDER_WEIGHTS = {"runware": 0.6, "flux_local": 0.25, "gemini": 0.15}

QUERIES: dict[str, dict[str, object]] = {
    "one word (lighthouse)": {"query": "lighthouse"},
    "one rare word (monastery)": {"query": "monastery"},
    "two words (red fox)": {"query": "red fox"},
    "two words, prefix last (misty light)": {"query": "misty light"},
    "filter by provider (gemini)": {"query": None, "provider": "gemini"},
    "word + provider (castle, gemini)": {"query": "castle", "provider": "gemini"},
    "word + model (owl, flux_dev)": {"query": "owl", "model": "flux_dev"},
    "worst: two words never together (dusk midnight)": {"query": "dusk midnight"},
    "worst: one-letter prefix (s)": {"query": "s"},
}


def prompt(rng: random.Random) -> str:
    def thing() -> str:
        return f"{rng.choices(ADJECTIVES, ADJECTIVE_WEIGHTS)[0]} {rng.choices(SUBJECTS, SUBJECT_WEIGHTS)[0]}"

    parts = [f"a {thing()}"]
    if rng.random() < 0.4:
        parts[0] += f" and a {thing()}"
    parts[0] += f" {rng.choice(SETTINGS)}"
    parts += rng.sample(STYLES, rng.randint(0, 2)) + rng.sample(LIGHTING, rng.randint(0, 2))
    return ", ".join(parts)


def image(text: str, provider: str, model: str, seed: int) -> NewImage:
    image_id = new_image_id()
    return NewImage(
        image_id, Path(f"/images/{image_id}.png"), URI_PREFIX + image_id, text, provider, model, 1024, 1024, seed=seed
    )


async def record_call(store: SQLiteHistory, text: str = "a lighthouse at dusk") -> None:
    """The history writes of one generate_image call with one image."""
    job = await store.create_job("generate", {"prompt": text, "model": "runware:flux_schnell"})
    await store.mark_running(job.id)
    result = {"images": [{"uri": "imagegen://images/x"}], "provider": "runware"}
    outcome = Succeeded(result, [image(text, "runware", "flux_schnell", 7)])
    await store.finish_job(job.id, Finish(outcome, provider="runware", model="flux_schnell", cost_usd=0.0013))


async def fill(store: SQLiteHistory, rows: int, seed: int = 1) -> float:
    """Record ``rows`` images in jobs of one to four, 32 jobs at a time; returns the seconds it took."""
    rng = random.Random(seed)
    providers, weights = list(PROVIDER_WEIGHTS), list(PROVIDER_WEIGHTS.values())
    started = time.perf_counter()
    left = rows

    async def one_job(count: int) -> None:
        provider = rng.choices(providers, weights)[0]
        model = rng.choice(MODELS[provider])
        text = prompt(rng)
        images = [image(text, provider, model, rng.randrange(2**31)) for _ in range(count)]
        job = await store.create_job("generate", {"prompt": text, "n": count})
        await store.finish_job(job.id, Finish(Succeeded({"n": count}, images), provider=provider, model=model))

    while left > 0:
        async with anyio.create_task_group() as group:
            for _ in range(32):
                count = min(left, rng.randint(1, 4))
                left -= count
                if count:
                    group.start_soon(one_job, count)
    return time.perf_counter() - started


async def rounds_of(call: Callable[[], Awaitable[object]], rounds: int, per_round: int) -> list[float]:
    """The median seconds of ``call`` in each of ``rounds`` rounds."""
    await call()  # warm
    medians = []
    for _ in range(rounds):
        samples = []
        for _ in range(per_round):
            started = time.perf_counter()
            await call()
            samples.append(time.perf_counter() - started)
        medians.append(statistics.median(samples))
    return medians


async def concurrent_rounds(store: SQLiteHistory, rounds: int, calls: int = 16) -> list[float]:
    """Per round, the wall time of ``calls`` concurrent calls' writes divided by ``calls``."""
    results = []
    for _ in range(rounds):
        started = time.perf_counter()
        async with anyio.create_task_group() as group:
            for _ in range(calls):
                group.start_soon(record_call, store)
        results.append((time.perf_counter() - started) / calls)
    return results


def row(name: str, medians: list[float], target: str, *extra: object) -> list[object]:
    spread = f"{min(medians) * 1000:.2f}-{max(medians) * 1000:.2f}"
    return [name, f"{median_ms(medians):.2f}", spread, *extra, target]


async def writes(store: SQLiteHistory, label: str, rounds: int) -> list[list[object]]:
    job = await store.create_job("generate", {"prompt": "progress"})
    await store.mark_running(job.id)
    return [
        row(f"one call's writes, sequential ({label})", await rounds_of(lambda: record_call(store), rounds, 50), "< 2"),
        row(f"one call's writes, 16 at once, amortised ({label})", await concurrent_rounds(store, rounds), "< 2"),
        row(f"update_progress ({label})", await rounds_of(lambda: store.update_progress(job.id, 0.5), rounds, 50), ""),
    ]


async def main(rows: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory(prefix="imagegen-history-bench-") as name:
        folder = Path(name)
        async with SQLiteHistory(folder / "fresh.sqlite3") as fresh:
            write_rows = await writes(fresh, "new database", rounds)
        async with SQLiteHistory(folder / "history.sqlite3") as store:
            fill_s = await fill(store, rows)
            write_rows += await writes(store, f"{rows:,} rows", rounds)
            search_rows = await searches(store, rounds)
        size_mb = sum(path.stat().st_size for path in folder.glob("history.sqlite3*")) / 1e6
    print(
        table(
            f"History writes per generate call, as the caller awaits them (median of {rounds} rounds; {machine()})",
            ["what", "median ms", "rounds ms", "target ms"],
            write_rows,
        )
    )
    print()
    print(
        table(
            f"search_images over {rows:,} images, newest 20 (median of {rounds} rounds of 20 queries)",
            ["query", "median ms", "rounds ms", "matches (to 1000)", "target ms"],
            search_rows,
        )
    )
    print(f"\n(filled through the store's API in {fill_s:.1f} s; database {size_mb:.0f} MB)")


async def searches(store: SQLiteHistory, rounds: int) -> list[list[object]]:
    results = []
    for name, arguments in QUERIES.items():

        async def search(arguments: dict[str, object] = arguments) -> object:
            return await store.search_images(**arguments, limit=20)  # type: ignore[arg-type]

        found = len(await store.search_images(**arguments, limit=1000))  # type: ignore[arg-type]
        results.append(row(name, await rounds_of(search, rounds, 20), "< 20", f"{found}+" if found == 1000 else found))
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=7)
    options = parser.parse_args()
    anyio.run(main, options.rows, options.rounds)
