"""Cold start: spawn over stdio -> initialize -> tools/list answered, imagegen-mcp against a bare MCPServer.

python -m bench.cold_start [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import anyio
from mcp import StdioServerParameters
from mcp.client import Client

from bench.common import machine, median_ms, table


async def time_start(parameters: StdioServerParameters) -> float:
    started = time.perf_counter()
    async with Client(parameters) as client:
        await client.list_tools()
        elapsed = time.perf_counter() - started
    return elapsed


async def main(runs: int) -> None:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env["IMAGEGEN_OUTPUT_DIR"] = tempfile.mkdtemp()
    env["IMAGEGEN_DB"] = env["IMAGEGEN_OUTPUT_DIR"] + "/history.sqlite3"
    servers = {
        "imagegen-mcp": StdioServerParameters(command=sys.executable, args=["-m", "imagegen_mcp"], env=env),
        "bare MCPServer": StdioServerParameters(command=sys.executable, args=["-m", "bench.bare_server"], env=env),
    }
    samples: dict[str, list[float]] = {name: [] for name in servers}
    for parameters in servers.values():  # warm the file cache once
        await time_start(parameters)
    for _ in range(runs):  # interleaved, so drift affects both alike
        for name, parameters in servers.items():
            samples[name].append(await time_start(parameters))
    base = median_ms(samples["bare MCPServer"])
    ours = median_ms(samples["imagegen-mcp"])
    print(
        table(
            f"Cold start, spawn to tools/list answered (median of {runs}; {machine()})",
            ["server", "median ms", "ratio", "target"],
            [["bare MCPServer", base, "1.00", ""], ["imagegen-mcp", ours, f"{ours / base:.2f}", "<= 1.30"]],
        )
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    anyio.run(main, parser.parse_args().runs)
