"""Local pipeline reuse: a second generate_image on the tiny SDXL pipeline (CPU) against the same generation
called directly on a diffusers pipeline object.

    python -m bench.local_reuse [--runs 7] [--size 512]

The first call's pipeline load is reported on its own; the ratio compares warm calls.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import anyio
from mcp.client import Client

from bench.common import machine, median_ms, table
from imagegen_mcp.config import Settings
from imagegen_mcp.server.app import build_server
from tests.fakes.tiny_pipelines import ensure_tiny_pipelines, tiny_environ, tiny_provider_type

STEPS = 4


def direct_samples(folder: Path, size: int, runs: int) -> tuple[float, list[float]]:
    import diffusers
    import torch

    started = time.perf_counter()
    pipe = diffusers.StableDiffusionXLPipeline.from_pretrained(str(folder), torch_dtype=torch.float32)
    pipe.scheduler = diffusers.EulerDiscreteScheduler.from_config(
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

    once(0)
    samples = []
    for seed in range(runs):
        started = time.perf_counter()
        once(seed)
        samples.append(time.perf_counter() - started)
    return load, samples


async def server_samples(root: Path, size: int, runs: int) -> tuple[float, list[float]]:
    tiny = ensure_tiny_pipelines(root)
    settings = Settings.load({**tiny_environ(tiny), "IMAGEGEN_OUTPUT_DIR": tempfile.mkdtemp()})
    arguments = {"prompt": "a lighthouse", "model": "tiny_sdxl", "width": size, "height": size, "steps": STEPS}
    async with Client(build_server(settings, provider_types=[tiny_provider_type(tiny)])) as client:
        started = time.perf_counter()
        first = await client.call_tool("generate_image", {**arguments, "seed": 0})
        first_ms = (time.perf_counter() - started) * 1000
        assert not first.is_error, first.content
        load_ms = (first.structured_content or {})["details"].get("pipeline_load_ms")
        samples = []
        for seed in range(runs):
            started = time.perf_counter()
            result = await client.call_tool("generate_image", {**arguments, "seed": seed})
            samples.append(time.perf_counter() - started)
            assert not result.is_error and result.structured_content
            assert result.structured_content["details"].get("pipeline_load_ms") is None  # reused, not reloaded
    print(f"first call through the server: {first_ms:.0f} ms, of which pipeline load {load_ms} ms")
    return float(load_ms or 0), samples


async def main(runs: int, size: int) -> None:
    root = Path(tempfile.gettempdir()) / "imagegen-bench-tiny"
    folder = ensure_tiny_pipelines(root).folder("sdxl")
    # Direct, server, direct again: the baseline brackets the server's run, so drift shows up in it.
    direct_load, direct = direct_samples(folder, size, runs)
    server_load, served = await server_samples(root, size, runs)
    direct += direct_samples(folder, size, runs)[1]
    base, ours = median_ms(direct), median_ms(served)
    print(
        table(
            f"Local pipeline reuse, tiny SDXL, {size}x{size}, {STEPS} steps, CPU (median of {runs}; {machine()})",
            ["path", "first load ms", "warm call ms", "ratio", "target"],
            [
                ["diffusers pipeline called directly", direct_load * 1000, base, "1.00", ""],
                ["generate_image via MCP (2nd+ call)", server_load, ours, f"{ours / base:.2f}", "<= 1.10"],
            ],
        )
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--size", type=int, default=512)
    options = parser.parse_args()
    anyio.run(main, options.runs, options.size)
