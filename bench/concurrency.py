"""Concurrency and transport: every way of getting Runware's images, measured in the same run.

    python -m bench.concurrency [--calls 32] [--rounds 5]

Each variant is a server over stdio, as MCP clients run it, configured by its RUNWARE_* settings; the loopback
Runware API is one more process, answering after 200 ms with photo-like PNGs. A round runs every variant in
turn (so drift on a shared machine hits all alike): one call and ``calls`` concurrent calls at 256x256 (target:
the burst within 1.5x one call, multiplexing over the one connection) and at 1024x1024 (throughput, against the
limit the cores allow for the server's own per-image work, measured alone). Ratios are taken per round; the
table gives their median and range over the rounds. A second table times the provider alone in this process
(no server, no storage): what each transport costs by itself.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pybase64
from mcp import StdioServerParameters
from mcp.client import Client

from bench.common import machine, median_ms, table
from bench.runware_fake import API_KEY, FakeRunware, Usage, fake_runware
from imagegen_mcp.config import Settings
from imagegen_mcp.providers.base import Progress
from imagegen_mcp.providers.runware import RunwareProvider
from imagegen_mcp.requests import ImageRequest, fit_request
from imagegen_mcp.storage import ImageStore
from imagegen_mcp.testing import photo_like_png

DELAY_S = 0.2
#: Name -> the RUNWARE_* settings of that variant.
VARIANTS: dict[str, dict[str, str]] = {
    "WebSocket, base64, permessage-deflate": {
        "RUNWARE_TRANSPORT": "websocket",
        "RUNWARE_OUTPUT": "base64",
        "RUNWARE_WS_COMPRESSION": "true",
    },
    "WebSocket, base64": {"RUNWARE_TRANSPORT": "websocket", "RUNWARE_OUTPUT": "base64"},
    "WebSocket, URL + HTTP fetch": {"RUNWARE_TRANSPORT": "websocket", "RUNWARE_OUTPUT": "url"},
    "REST, base64": {"RUNWARE_TRANSPORT": "rest", "RUNWARE_OUTPUT": "base64"},
    "REST, URL + HTTP fetch": {"RUNWARE_TRANSPORT": "rest", "RUNWARE_OUTPUT": "url"},
}


@dataclass
class Samples:
    """Per-round measurements of one variant."""

    one_256: list[float] = field(default_factory=list)
    burst_256: list[float] = field(default_factory=list)
    burst_1024: list[float] = field(default_factory=list)
    #: The same bursts made by the provider alone, in this process.
    alone_256: list[float] = field(default_factory=list)
    alone_1024: list[float] = field(default_factory=list)
    #: The limit the cores allowed for the server's per-image work in the same round (images/s).
    limits: list[float] = field(default_factory=list)
    usage: Usage = field(default_factory=lambda: Usage(0, 0, 0))
    #: CPU seconds of each 256x256 burst by process (``server``, ``server main thread``, ``fake``, ``client``).
    burst_cpu: dict[str, list[float]] = field(default_factory=dict)

    def ratios_256(self) -> list[float]:
        return [burst / one for one, burst in zip(self.one_256, self.burst_256, strict=True)]

    def throughputs(self, calls: int) -> list[float]:
        return [calls / seconds for seconds in self.burst_1024]

    def shares_of_limit(self, calls: int) -> list[float]:
        return [100 * value / limit for value, limit in zip(self.throughputs(calls), self.limits, strict=True)]


#: One generation of a ``size`` x ``size`` image.
Call = Callable[[int], Coroutine[Any, Any, None]]


def args(size: int) -> dict[str, object]:
    return {"prompt": "a lighthouse", "model": "runware:flux_schnell", "width": size, "height": size}


def through_server(client: Client) -> Call:
    async def call(size: int) -> None:
        result = await client.call_tool("generate_image", args(size))
        assert not result.is_error, result.content

    return call


def provider_alone(provider: RunwareProvider) -> Call:
    model = provider.models["flux_schnell"]

    async def call(size: int) -> None:
        request, _ = fit_request(
            ImageRequest(prompt="a lighthouse", width=size, height=size),
            model,
            "runware:flux_schnell",
            primary=True,
            seed=1,
        )
        await provider.generate(request, model, Progress())

    return call


async def burst(call: Call, calls: int, size: int) -> float:
    started = time.perf_counter()
    async with anyio.create_task_group() as group:
        for _ in range(calls):
            group.start_soon(call, size)
    return time.perf_counter() - started


def child_pids(marker: bytes = b"") -> set[int]:
    """The processes this one started whose command line holds ``marker`` (Linux: read from /proc; elsewhere
    none, and no CPU table is printed)."""
    pids = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            command = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if parent == os.getpid() and marker in command:
            pids.add(int(stat.parent.name))
    return pids


def cpu_seconds(pid: int, *, main_thread: bool = False) -> float:
    """User and system CPU time of a process (or of its main thread) so far."""
    path = Path(f"/proc/{pid}/task/{pid}/stat" if main_thread else f"/proc/{pid}/stat")
    fields = path.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Processes:
    """Where the CPU of a burst goes: the server of a variant, the fake, and this process (the MCP client)."""

    server: int
    fake: int

    def cpu(self) -> dict[str, float]:
        return {
            "server": cpu_seconds(self.server),
            "server main thread": cpu_seconds(self.server, main_thread=True),
            "fake": cpu_seconds(self.fake),
            "client": time.process_time(),
        }


async def accounted_burst(call: Call, calls: int, processes: Processes | None, into: Samples) -> float:
    """A 256x256 burst, with the CPU each process spent on it added to ``into``."""
    before = processes.cpu() if processes else {}
    seconds = await burst(call, calls, 256)
    if processes:
        for name, value in processes.cpu().items():
            into.burst_cpu.setdefault(name, []).append(value - before[name])
    return seconds


def per_image_work_ms(size: int, runs: int = 10) -> float:
    """The server's CPU work for one image (base64 decode, preview, write), measured alone."""
    png = photo_like_png(size, size, 0)
    encoded = pybase64.b64encode(png).decode("ascii")
    defaults = Settings.load({})
    store = ImageStore(Path(tempfile.mkdtemp()), defaults.preview_max_px, defaults.preview_format)
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        store.save(pybase64.b64decode(encoded), {"prompt": "x"})
        samples.append(time.perf_counter() - started)
    store.close()
    return median_ms(samples)


def environ(fake: FakeRunware, settings: dict[str, str]) -> dict[str, str]:
    return {
        "RUNWARE_API_KEY": API_KEY,
        "RUNWARE_URL": fake.ws_url,
        "RUNWARE_HTTP_URL": fake.http_url,
        "IMAGEGEN_OUTPUT_DIR": tempfile.mkdtemp(),
        "IMAGEGEN_LOG_LEVEL": "WARNING",
        **settings,
    }


def server(fake: FakeRunware, settings: dict[str, str]) -> StdioServerParameters:
    env = {**os.environ, **environ(fake, settings)}
    return StdioServerParameters(command=sys.executable, args=["-m", "imagegen_mcp"], env=env)


def spread(values: Sequence[float], digits: int = 2) -> str:
    """Median and range."""
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


async def measure(calls: int, rounds: int) -> dict[str, Samples]:
    samples = {name: Samples() for name in VARIANTS}
    with fake_runware(delay_s=DELAY_S) as fake:
        fake_pid = next(iter(child_pids(b"spawn_main")), None)  # not multiprocessing's resource tracker
        async with AsyncExitStack() as stack:
            served: dict[str, Call] = {}
            alone: dict[str, Call] = {}
            processes: dict[str, Processes | None] = {}
            for name, settings in VARIANTS.items():
                started = child_pids()
                served[name] = through_server(await stack.enter_async_context(Client(server(fake, settings))))
                server_pid = next(iter(child_pids() - started), None)
                processes[name] = Processes(server_pid, fake_pid) if server_pid and fake_pid else None
                provider = RunwareProvider(Settings.load(environ(fake, settings)))
                stack.push_async_callback(provider.aclose)
                alone[name] = provider_alone(provider)
            for call in (*served.values(), *alone.values()):  # connect, import and warm up
                await burst(call, 4, 256)
                await burst(call, 4, 1024)
            before = fake.usage_and_forget()
            for _ in range(rounds):
                limit = (os.cpu_count() or 1) * 1000 / per_image_work_ms(1024, runs=5)
                for name, call in served.items():
                    measured = samples[name]
                    measured.limits.append(limit)
                    measured.one_256.append(await burst(call, 1, 256))
                    measured.burst_256.append(await accounted_burst(call, calls, processes[name], measured))
                    measured.burst_1024.append(await burst(call, calls, 1024))
                    measured.alone_256.append(await burst(alone[name], calls, 256))
                    measured.alone_1024.append(await burst(alone[name], calls, 1024))
                    after = fake.usage_and_forget()
                    used = measured.usage
                    measured.usage = Usage(
                        used.websockets + after.websockets - before.websockets,
                        used.http_connections + after.http_connections - before.http_connections,
                        used.downloads + after.downloads - before.downloads,
                    )
                    before = after
    return samples


def cpu_row(measured: Samples, calls: int, cores: int) -> list[object]:
    """The CPU of a variant's bursts, and the shortest burst that CPU allows on ``cores`` cores."""
    cpu = {name: statistics.median(values) * 1000 for name, values in measured.burst_cpu.items()}
    floor = DELAY_S * 1000 + (cpu["server"] + cpu["fake"] + cpu["client"]) / cores
    one = median_ms(measured.one_256)
    return [
        cpu["server"] / calls,
        cpu["server main thread"] / calls,
        f"{cpu['fake']:.0f}, {cpu['client']:.0f}",
        floor,
        f"{floor / one:.2f}",
        spread(measured.ratios_256()),
    ]


async def main(calls: int, rounds: int) -> None:
    samples = await measure(calls, rounds)
    cores = os.cpu_count() or 1
    rows: list[list[object]] = []
    for name, measured in samples.items():
        usage = measured.usage
        rows.append(
            [
                name,
                median_ms(measured.one_256),
                median_ms(measured.burst_256),
                spread(measured.ratios_256()),
                spread(measured.throughputs(calls), 1),
                spread(measured.shares_of_limit(calls), 0),
                f"{usage.websockets} / {usage.http_connections} / {usage.downloads}",
            ]
        )
    print(
        table(
            f"Runware transports, server over stdio, fake answering after {DELAY_S * 1000:.0f} ms with photo-like "
            f"PNGs ({calls} concurrent calls; median (range) of {rounds} rounds; {machine()})",
            [
                "variant",
                "1 call 256² ms",
                f"{calls} x 256² ms",
                "burst / 1 call (≤ 1.50)",
                "1024² images/s",
                f"% of the {cores}-core limit (≥ 50)",
                "new WebSockets / REST TCP / downloads",
            ],
            rows,
        )
    )
    print()
    print(
        table(
            "The provider alone, in this process: no server and no storage (same fake, same rounds; a download "
            "that takes over 5 ms is decoded while it arrives, so the URL rows include decoding)",
            ["variant", f"{calls} x 256² ms", f"{calls} x 1024² ms", "1024² images/s"],
            [
                [
                    name,
                    median_ms(measured.alone_256),
                    median_ms(measured.alone_1024),
                    spread([calls / seconds for seconds in measured.alone_1024], 1),
                ]
                for name, measured in samples.items()
            ],
        )
    )
    cpu_rows = [[name, *cpu_row(measured, calls, cores)] for name, measured in samples.items() if measured.burst_cpu]
    if cpu_rows:
        print()
        print(
            table(
                f"Where the CPU of a {calls} x 256² burst goes (median of the rounds; the floor: the fake's "
                f"{DELAY_S * 1000:.0f} ms, then all of it spread over the {cores} cores)",
                [
                    "variant",
                    "server CPU ms per call",
                    "of which its event loop",
                    "fake, client ms per burst",
                    "floor ms",
                    "floor / 1 call",
                    "measured / 1 call",
                ],
                cpu_rows,
            )
        )
    limits = next(iter(samples.values())).limits
    print(
        f"\nThe limit the {cores} cores allow for the server's own work on a 1024x1024 image (decode, preview, "
        f"write; measured alone in each round): {spread(limits, 0)} images/s."
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    options = parser.parse_args()
    anyio.run(main, options.calls, options.rounds)
