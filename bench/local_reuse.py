"""Local pipeline reuse: a second generate_image on the tiny SDXL pipeline (CPU) against the same generation
called directly on a diffusers pipeline object.

    python -m bench.local_reuse [--runs 7] [--size 512]

The first call's pipeline load is reported on its own; the ratio compares warm calls, taken alternately. The
direct pipeline's load includes diffusers' lazy imports; the server's first load happened after them.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
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


async def main(runs: int, size: int) -> None:
    tiny = ensure_tiny_pipelines(Path(tempfile.gettempdir()) / "imagegen-bench-tiny")
    folder = tempfile.mkdtemp()
    settings = Settings.load(
        {**tiny_environ(tiny), "IMAGEGEN_OUTPUT_DIR": folder, "IMAGEGEN_DB": f"{folder}/history.sqlite3"}
    )
    arguments = {"prompt": "a lighthouse", "model": "tiny_sdxl", "width": size, "height": size, "steps": STEPS}
    direct_load, direct = direct_pipeline(tiny.folder("sdxl"), size)
    samples: dict[str, list[float]] = {"direct": [], "server": []}
    async with Client(build_server(settings, providers=[tiny_provider_type(tiny)])) as client:
        first = await client.call_tool("generate_image", {**arguments, "seed": 0})
        assert not first.is_error and first.structured_content, first.content
        server_load = first.structured_content["details"]["pipeline_load_ms"]
        direct(0)
        for seed in range(runs):  # alternating, so that drift affects both alike
            started = time.perf_counter()
            direct(seed)
            samples["direct"].append(time.perf_counter() - started)
            started = time.perf_counter()
            result = await client.call_tool("generate_image", {**arguments, "seed": seed})
            samples["server"].append(time.perf_counter() - started)
            assert not result.is_error and result.structured_content
            assert result.structured_content["details"]["pipeline_load_ms"] is None  # reused, not reloaded
    base, ours = median_ms(samples["direct"]), median_ms(samples["server"])
    print(
        table(
            f"Local pipeline reuse, tiny SDXL, {size}x{size}, {STEPS} steps, CPU (median of {runs}; {machine()})",
            ["path", "pipeline load ms", "warm call ms", "ratio", "target"],
            [
                ["diffusers pipeline called directly", direct_load * 1000, base, "1.00", ""],
                ["generate_image via MCP (2nd+ call)", float(server_load), ours, f"{ours / base:.2f}", "<= 1.10"],
            ],
        )
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=11)
    parser.add_argument("--size", type=int, default=512)
    options = parser.parse_args()
    anyio.run(main, options.runs, options.size)
