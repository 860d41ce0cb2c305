"""The first local generation of a fresh server process, as its client sees it.

:func:`run_first_generation` starts a new interpreter (so that torch, diffusers and transformers are imported
cold, as on a user's first call) that serves the tiny pipelines in process behind a real MCP client, calls
list_providers a few times, then starts a generate_image on the tiny SDXL (CPU) and calls list_providers in a
loop until it returns. Everything the client sees is recorded in order, on the one event loop thread: each
progress notification and each completed list_providers. tests/test_local_responsiveness.py asserts on the
order; bench/local_responsiveness.py on the times.

    python -m tests.first_generation TINY_ROOT OUTPUT_DIR BASELINE_CALLS   (prints the record as JSON)
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import anyio
from mcp.client import Client

from imagegen_mcp.config import Settings
from imagegen_mcp.server.app import build_server
from tests.e2e import REPO
from tests.fakes.tiny_pipelines import TinyPipelines, tiny_environ, tiny_provider_type

#: What list_providers must never import: each takes from a tenth of a second to seconds.
HEAVY_MODULES = ("torch", "diffusers", "transformers", "huggingface_hub.file_download")
LAG_TICK_S = 0.005


@dataclass
class Event:
    #: "progress", "list_providers" (one answered) or "result".
    kind: str
    #: Seconds since the generate_image call.
    at: float
    #: The progress message.
    message: str = ""
    #: How long the list_providers call took, and the CPU time this process had meanwhile (all its threads),
    #: in seconds: far less CPU than time means the process waited for a core, not for the GIL.
    took: float = 0.0
    cpu: float = 0.0


@dataclass
class FirstGeneration:
    #: The first list_providers of the process, and the ones after it, before any generation.
    first_list_providers: float
    baseline: list[float]
    #: Of :data:`HEAVY_MODULES`, the ones imported when the generation started.
    heavy_imported_before: list[str]
    #: From the generate_image call to its result, in the order the client saw them.
    events: list[Event] = field(default_factory=list)
    #: The worst lateness of a short sleep on the event loop during the generation, in seconds.
    loop_lag: float = 0.0
    gc_enabled_after: bool = False
    switch_interval_after: float = 0.0
    #: Objects the garbage collector no longer scans after the generation (``gc.get_freeze_count()``).
    gc_frozen_after: int = 0
    #: The class of the loader that loaded torch's extension module.
    torch_c_loader: str = ""
    #: The machine's load average (1 minute) as the generation started: other processes compete for the cores.
    load: float = 0.0

    @property
    def messages(self) -> list[str]:
        return [event.message for event in self.events if event.kind == "progress"]

    def during(self) -> list[float]:
        """How long each list_providers answered during the generation took."""
        return [event.took for event in self.calls()]

    def calls(self) -> list[Event]:
        return [event for event in self.events if event.kind == "list_providers"]

    def at(self, message: str = "", kind: str = "progress") -> float:
        """When the client saw the first event of ``kind`` (a progress notification: starting with ``message``)."""
        return next(event.at for event in self.events if event.kind == kind and event.message.startswith(message))

    def answered_between(self, first: str, last: str) -> int:
        """The list_providers calls answered after the notification ``first`` and before ``last`` (prefixes)."""
        start, end = self.at(first), self.at(last)
        return sum(1 for event in self.events if event.kind == "list_providers" and start < event.at < end)


class _LoopLag:
    def __init__(self) -> None:
        self.worst = 0.0

    async def run(self) -> None:
        while True:
            started = time.perf_counter()
            await anyio.sleep(LAG_TICK_S)
            self.worst = max(self.worst, time.perf_counter() - started - LAG_TICK_S)


async def _timed_list_providers(client: Client) -> tuple[float, float]:
    """How long one list_providers took, and this process's CPU time meanwhile."""
    started, cpu = time.perf_counter(), time.process_time()
    result = await client.call_tool("list_providers", {})
    assert not result.is_error, result.content
    return time.perf_counter() - started, time.process_time() - cpu


async def _first_generation(tiny: TinyPipelines, output: Path, baseline_calls: int) -> FirstGeneration:
    settings = Settings.load(
        {**tiny_environ(tiny), "IMAGEGEN_OUTPUT_DIR": str(output), "IMAGEGEN_DB": str(output / "history.sqlite3")}
    )
    arguments = {"prompt": "a lighthouse", "model": "tiny_sdxl", "width": 128, "height": 128, "wait_s": 300}
    async with Client(build_server(settings, providers=[tiny_provider_type(tiny)])) as client:
        first, _ = await _timed_list_providers(client)
        record = FirstGeneration(
            first_list_providers=first,
            baseline=[(await _timed_list_providers(client))[0] for _ in range(baseline_calls)],
            heavy_imported_before=[name for name in HEAVY_MODULES if name in sys.modules],
            load=os.getloadavg()[0],
        )
        called = time.perf_counter()

        def add(kind: str, message: str = "", took: float = 0.0, cpu: float = 0.0) -> None:
            record.events.append(Event(kind, time.perf_counter() - called, message, took, cpu))

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            add("progress", message=message or "")

        lag = _LoopLag()
        finished = anyio.Event()

        async def generate() -> None:
            result = await client.call_tool("generate_image", arguments, progress_callback=on_progress)
            assert not result.is_error, result.content
            add("result")
            finished.set()

        async with anyio.create_task_group() as group:
            group.start_soon(lag.run)
            group.start_soon(generate)
            while not finished.is_set():
                took, cpu = await _timed_list_providers(client)
                add("list_providers", took=took, cpu=cpu)
            group.cancel_scope.cancel()
        record.loop_lag = lag.worst
        record.gc_enabled_after = gc.isenabled()
        record.switch_interval_after = sys.getswitchinterval()
        record.gc_frozen_after = gc.get_freeze_count()
        record.torch_c_loader = type(sys.modules["torch._C"].__loader__).__name__
    return record


def run_first_generation(tiny_root: Path, output: Path, baseline_calls: int) -> FirstGeneration:
    """One first generation in a new interpreter (the tiny pipelines under ``tiny_root`` must be built)."""
    command = [sys.executable, "-m", "tests.first_generation", str(tiny_root), str(output), str(baseline_calls)]
    done = subprocess.run(command, cwd=REPO, check=True, capture_output=True, text=True, timeout=900)
    data = json.loads(done.stdout.strip().splitlines()[-1])
    events = [Event(**event) for event in data.pop("events")]
    return FirstGeneration(**data, events=events)


if __name__ == "__main__":
    root, folder, calls = sys.argv[1:]
    output_dir = Path(folder)
    output_dir.mkdir(parents=True, exist_ok=True)
    outcome = anyio.run(_first_generation, TinyPipelines(Path(root)), output_dir, int(calls))
    print(json.dumps(asdict(outcome)))
