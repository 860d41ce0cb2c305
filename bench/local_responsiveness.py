"""Event loop responsiveness during the first local generation: list_providers answered in a loop while the
first generate_image imports torch and diffusers and loads the tiny SDXL pipeline (CPU, 128x128, 4 steps),
against list_providers with no generation running (baseline), in the same process.

    python -m bench.local_responsiveness [--rounds 5] [--baseline-calls 40]

Every round is a fresh interpreter (tests/first_generation.py), so the imports are cold (the file cache is
warm after the first round), with the server in process behind a real MCP client in memory. The loop lag is
how late a 5 ms sleep on that event loop wakes up: what any request waits at worst.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from bench.common import machine, table
from tests.fakes.tiny_pipelines import ensure_tiny_pipelines
from tests.first_generation import HEAVY_MODULES, FirstGeneration, run_first_generation

TARGET_MS = 100.0
FIRST_STEP = "image 1/"


def spread(values: Sequence[float], scale: float = 1000) -> str:
    """Median over the rounds (in milliseconds, or per cent with ``scale=100``), with the smallest and largest."""
    scaled = [value * scale for value in values]
    return f"{statistics.median(scaled):.1f} ({min(scaled):.1f}-{max(scaled):.1f})"


def slowest_call_cpu_share(run: FirstGeneration) -> float:
    """The CPU time this process got during its slowest list_providers, per unit of that call's time. A thread
    of its own holding the GIL runs meanwhile (a share near 100% or more, on 2 cores); far less means the
    process was waiting for a core that other processes had."""
    slowest = max(run.calls(), key=lambda event: event.took)
    return slowest.cpu / slowest.took


def report(runs: list[FirstGeneration], baseline_calls: int) -> str:
    def of(pick: Callable[[FirstGeneration], float]) -> list[float]:
        return [pick(run) for run in runs]

    idle_slowest, busy_slowest = of(lambda run: max(run.baseline)), of(lambda run: max(run.during()))
    ratio = statistics.median(busy_slowest) / statistics.median(idle_slowest)
    held = sum(value * 1000 <= TARGET_MS for value in busy_slowest)
    idle_median = spread(of(lambda run: statistics.median(run.baseline)))
    busy_median = spread(of(lambda run: statistics.median(run.during())))
    target = f"<= {TARGET_MS:.0f} ms ({held}/{len(runs)} rounds)"
    rows = [
        ["list_providers, no generation (baseline)", idle_median, spread(idle_slowest), "1.00", ""],
        ["list_providers during the first generate_image", busy_median, spread(busy_slowest), f"{ratio:.2f}", target],
        ["process CPU during that slowest call, % of its time", spread(of(slowest_call_cpu_share), 100), "", "", ""],
        ["event loop lag during the first generate_image", "", spread(of(lambda run: run.loop_lag)), "", ""],
        ["first list_providers of the process", spread(of(lambda run: run.first_list_providers)), "", "", ""],
        ["call to the first progress notification", spread(of(lambda run: run.at())), "", "", ""],
        ["call to the first denoising step (imports + load)", spread(of(lambda run: run.at(FIRST_STEP))), "", "", ""],
        ["call to the result", spread(of(lambda run: run.at(kind="result"))), "", "", ""],
    ]
    calls = statistics.median(of(lambda run: len(run.during())))
    title = (
        f"First local generation (cold imports), tiny SDXL on the CPU, list_providers in a loop (median (min-max) "
        f"of {len(runs)} fresh processes; {baseline_calls} baseline calls and {calls:.0f} during the generation "
        f"each; load average {statistics.median(of(lambda run: run.load)):.1f}; {machine()})"
    )
    before_steps = itertools.takewhile(lambda message: not message.startswith(FIRST_STEP), runs[0].messages)
    imported = sorted({name for run in runs for name in run.heavy_imported_before}) or ["none"]
    return (
        table(title, ["measure", "median ms", "slowest ms", "slowest, ratio", "target"], rows)
        + f"\n\nProgress messages before the first step: {', '.join(map(repr, before_steps))}."
        + f"\nOf {', '.join(HEAVY_MODULES)}, imported by list_providers: {', '.join(imported)}."
    )


def main(rounds: int, baseline_calls: int) -> None:
    tiny = ensure_tiny_pipelines(Path(tempfile.gettempdir()) / "imagegen-bench-tiny")
    runs = []
    for _ in range(rounds):  # one after the other: never two processes competing for the cores
        runs.append(run_first_generation(tiny.root, Path(tempfile.mkdtemp()), baseline_calls))
    print(report(runs, baseline_calls))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--baseline-calls", type=int, default=40)
    options = parser.parse_args()
    main(options.rounds, options.baseline_calls)
