"""Local pipeline reuse: a second generate_image on the tiny SDXL pipeline (CPU) against the same generation
called directly on a diffusers pipeline object.

    python -m bench.local_reuse [--rounds 6] [--calls 3] [--size 512]

The first call's pipeline load is reported on its own; the ratio compares warm calls: each round times a block of
``--calls`` calls of each path (the order flipping from round to round) and takes the ratio of their medians; the
table gives the median and range of those ratios. The direct pipeline's load includes diffusers' lazy imports;
the server's first load happened after them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import anyio
from mcp.client import Client

from bench.common import machine, median_ms, table
from imagegen_mcp.config import Settings
from imagegen_mcp.server.app import build_server
from tests.fakes.tiny_pipelines import ensure_tiny_pipelines, tiny_environ, tiny_provider_type

STEPS = 4


def direct_pipeline(folder: Path, size: int) -> tuple[float, Callable[[int], None]]:
    """The same tiny SDXL pipeline loaded straight with diffusers; returns its load time and a call."""
    import diffusers
    import torch

    started = time.perf_counter()
    pipe = diffusers.StableDiffusionXLPipeline.from_pretrained(str(folder), torch_dtype=torch.float32)  # type: ignore[no-untyped-call]
    pipe.scheduler = diffusers.EulerDiscreteScheduler.from_config(  # type: ignore[no-untyped-call]
        pipe.scheduler.config, timestep_spacing="trailing", prediction_type="epsilon"
    )
    pipe.set_progress_bar_config(disable=True)
    load = time.perf_counter() - started

    def once(seed: int) -> None:
        generator = torch.Generator("cpu").manual_seed(seed)
        pipe(
            "a lighthouse",
            num_inference_steps=STEPS,
            guidance_scale=0.0,
            width=size,
            height=size,
            generator=generator,
        ).images[0].load()

    return load, once


async def main(rounds: int, calls: int, size: int) -> None:
    tiny = ensure_tiny_pipelines(Path(tempfile.gettempdir()) / "imagegen-bench-tiny")
    folder = tempfile.mkdtemp()
    settings = Settings.load(
        {**tiny_environ(tiny), "IMAGEGEN_OUTPUT_DIR": folder, "IMAGEGEN_DB": f"{folder}/history.sqlite3"}
    )
    arguments = {"prompt": "a lighthouse", "model": "tiny_sdxl", "width": size, "height": size, "steps": STEPS}
    direct_load, direct = direct_pipeline(tiny.folder("sdxl"), size)
    async with Client(build_server(settings, providers=[tiny_provider_type(tiny)])) as client:
        first = await client.call_tool("generate_image", {**arguments, "seed": 0})
        assert not first.is_error and first.structured_content, first.content
        server_load = first.structured_content["details"]["pipeline_load_ms"]
        direct(0)

        async def through_server(seed: int) -> None:
            result = await client.call_tool("generate_image", {**arguments, "seed": seed})
            assert not result.is_error and result.structured_content
            assert result.structured_content["details"]["pipeline_load_ms"] is None  # reused, not reloaded

        async def directly(seed: int) -> None:
            direct(seed)

        async def block(call: Callable[[int], Awaitable[None]]) -> float:
            """The median of ``calls`` calls in a row: alternating single calls would let one path's
            after-work (the other pipeline's weights in the caches) fall on the other."""
            samples = []
            for seed in range(calls):
                started = time.perf_counter()
                await call(seed)
                samples.append(time.perf_counter() - started)
            return statistics.median(samples)

        bases: list[float] = []
        ours: list[float] = []
        for index in range(rounds):  # the order flips each round, so that drift affects both alike
            if index % 2:
                ours.append(await block(through_server))
                bases.append(await block(directly))
            else:
                bases.append(await block(directly))
                ours.append(await block(through_server))
    ratios = [served / alone for alone, served in zip(bases, ours, strict=True)]
    print(
        table(
            f"Local pipeline reuse, tiny SDXL, {size}x{size}, {STEPS} steps, CPU (median (range) of {rounds} rounds of "
            f"{calls} calls each; {machine()})",
            ["path", "pipeline load ms", "warm call ms", "ratio", "target"],
            [
                ["diffusers pipeline called directly", direct_load * 1000, median_ms(bases), "1.00", ""],
                [
                    "generate_image via MCP (2nd+ call)",
                    float(server_load),
                    median_ms(ours),
                    f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})",
                    "<= 1.10",
                ],
            ],
        )
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--calls", type=int, default=3)
    parser.add_argument("--size", type=int, default=512)
    options = parser.parse_args()
    anyio.run(main, options.rounds, options.calls, options.size)
