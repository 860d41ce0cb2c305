"""Models from the config file: each provider validates its own entries, a bad entry stops the start with one
message naming the file, the table and the field, and the models a file adds are listed and generate."""

from __future__ import annotations

import base64
import io
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mcp.client import Client
from mcp_types import BlobResourceContents, CallToolResult
from PIL import Image

from imagegen_mcp.catalog import ProviderSpec
from imagegen_mcp.config import Settings
from imagegen_mcp.providers.flux_local import FluxLocalProvider
from imagegen_mcp.providers.gemini import GeminiProvider
from imagegen_mcp.providers.runware import RunwareProvider
from imagegen_mcp.server.app import build_server
from tests.e2e import REPO, assert_image_result, clean_environ, error_of, text_of
from tests.fakes.gemini_server import GEMINI_KEY, SERVED_MODELS, FakeGeminiServer, ServedModel
from tests.fakes.runware_api import DEFAULT_KEY, FakeRunwareAPI
from tests.fakes.tiny_pipelines import TinyPipelines, tiny_environ, write_tiny_lora

pytestmark = pytest.mark.anyio

PROVIDERS: list[ProviderSpec] = [FluxLocalProvider, GeminiProvider, RunwareProvider]
#: A Gemini model newer than the package: only a config entry names it.
NEWER_GEMINI = "gemini-4-flash-image"


def refused_start(tmp_path: Path, text: str) -> tuple[Path, str]:
    """Start the server (stdio, as a client would) with ``text`` as its config file; it must refuse with one
    line on stderr and nothing on stdout. Returns the file and that line."""
    config = tmp_path / "config.toml"
    config.write_text(text)
    done = subprocess.run(
        [sys.executable, "-m", "imagegen_mcp", "--config", str(config)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=clean_environ(IMAGEGEN_OUTPUT_DIR=str(tmp_path / "images")),
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    return config, line


@pytest.mark.parametrize(
    ("text", "table", "field", "problem"),
    [
        pytest.param(
            '[[models.runware]]\nkey = "juggernaut_x"\ndefault_steps = 30\ndefault_guidance = 6.0\n',
            "[[models.runware]] entry 1 (key 'juggernaut_x')",
            "air",
            "Field required",
            id="runware-without-air",
        ),
        pytest.param(
            '[[models.gemini]]\nkey = "g"\napi_model = "gemini-3-pro-image"\nstepz = 3\n',
            "[[models.gemini]] entry 1 (key 'g')",
            "stepz",
            "Extra inputs are not permitted (the fields of a GeminiModelConfig: key, display_name,",
            id="unknown-field",
        ),
        pytest.param(
            '[[models.flux_local]]\nkey = "mine"\npipeline = "sdxl"\nrepo_id = "a/b"\n\n'
            '[[models.flux_local]]\nkey = "mine"\npipeline = "sd"\nrepo_id = "c/d"\n',
            "[[models.flux_local]]",
            "key 'mine'",
            "is defined twice",
            id="key-twice",
        ),
        pytest.param(
            '[[models.flux_local]]\nkey = "mine"\npipeline = "sdxl"\npath = "/nowhere/mine.safetensors"\n',
            "[[models.flux_local]] entry 1 (key 'mine')",
            "path",
            "/nowhere/mine.safetensors does not exist",
            id="missing-path",
        ),
        pytest.param(
            '[[models.flux_local]]\nkey = "mine"\npipeline = "sd3"\nrepo_id = "a/b"\n',
            "[[models.flux_local]] entry 1 (key 'mine')",
            "pipeline",
            "Input should be 'sdxl' or 'sd'",
            id="value-not-allowed",
        ),
        pytest.param(
            '[[models.flux_local]]\nkey = "mine"\npipeline = sdxl\n',
            "in [[models.flux_local]]",
            "field pipeline",
            "not valid TOML: Invalid value (at line 3, column 12)",
            id="bad-toml",
        ),
        pytest.param(
            '[[models.runwar]]\nkey = "x"\nair = "runware:100@1"\n',
            "[[models.runwar]]",
            "runwar",
            "no provider is named 'runwar'; the providers are",
            id="unknown-provider",
        ),
    ],
)
def test_an_invalid_entry_stops_the_start_with_one_message(
    tmp_path: Path, text: str, table: str, field: str, problem: str
) -> None:
    config, message = refused_start(tmp_path, text)
    assert message.startswith(f"imagegen-mcp: {config}: ")
    assert table in message and field in message and problem in message, message


def test_the_example_config_file_loads(tmp_path: Path) -> None:
    """Every kind of entry ``examples/config.toml`` shows is valid, once its local files exist."""
    models = tmp_path / "models"
    (models / "loras").mkdir(parents=True)
    (models / "my_sdxl.safetensors").write_bytes(b"")
    (models / "loras" / "ink_style.safetensors").write_bytes(b"")
    config = tmp_path / "config.toml"
    config.write_text((REPO / "examples" / "config.toml").read_text().replace('"/models/', f'"{models}/'))
    done = subprocess.run(
        [sys.executable, "-m", "imagegen_mcp", "--config", str(config), "models"],
        capture_output=True,
        text=True,
        env=clean_environ(IMAGEGEN_OUTPUT_DIR=str(tmp_path / "images")),
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    for model in ("runware:juggernaut_x", "runware:flux_dev_watercolor", "flux_local:my_sdxl"):
        assert model in done.stdout
    assert "flux_local:dreamshaper_xl" in done.stdout and "gemini:nano_banana_next" in done.stdout


def local_entry(key: str, tiny: TinyPipelines, loras: str = "") -> str:
    """A flux_local entry for the tiny SDXL as one checkpoint file, assembled with the tiny base's configs."""
    return (
        f'[[models.flux_local]]\nkey = "{key}"\npipeline = "sdxl"\npath = "{tiny.checkpoint("sdxl")}"\n'
        f'base_path = "{tiny.folder("sdxl")}"\ndefault_steps = 2\ndefault_width = 128\ndefault_height = 128\n'
        + (f"loras = [{loras}]\n" if loras else "")
    )


@pytest.fixture
def newer_gemini() -> Any:
    served = {**SERVED_MODELS, NEWER_GEMINI: ServedModel(frozenset({"1K", "2K"}), frozenset({"1:1", "16:9"}))}
    with FakeGeminiServer(api_keys={GEMINI_KEY}, served=served) as server:
        yield server


async def pixels(client: Client, result: CallToolResult) -> np.ndarray[Any, Any]:
    (image,) = assert_image_result(result, count=1)
    (blob,) = (await client.read_resource(image["uri"])).contents
    assert isinstance(blob, BlobResourceContents)
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(blob.blob))).convert("RGB")).astype(int)


async def test_models_from_the_file_are_listed_and_generate(
    tmp_path: Path, tiny_pipelines: TinyPipelines, newer_gemini: FakeGeminiServer, runware: FakeRunwareAPI
) -> None:
    lora = write_tiny_lora(tiny_pipelines, tmp_path / "lora")
    config = tmp_path / "config.toml"
    config.write_text(
        local_entry("my_sdxl", tiny_pipelines, loras=f'{{ path = "{lora}", weight = 1.0 }}')
        + local_entry("my_sdxl_plain", tiny_pipelines)
        + f'[[models.gemini]]\nkey = "nano_banana_next"\napi_model = "{NEWER_GEMINI}"\nimage_sizes = ["1K", "2K"]\n'
        + '[[models.runware]]\nkey = "juggernaut_xl"\nair = "civitai:133005@782002"\n'
        + 'loras = [{ model = "civitai:58390@62833", weight = 0.7 }]\n'
        + '[providers.flux_local]\ndefault_model = "my_sdxl"\n'
    )
    settings = Settings.load(
        {
            **tiny_environ(tiny_pipelines),
            "IMAGEGEN_CONFIG": str(config),
            "IMAGEGEN_OUTPUT_DIR": str(tmp_path / "images"),
            "IMAGEGEN_DB": str(tmp_path / "history.sqlite3"),
            "GEMINI_API_KEY": GEMINI_KEY,
            "GEMINI_BASE_URL": newer_gemini.url,
            "RUNWARE_API_KEY": DEFAULT_KEY,
            "RUNWARE_URL": runware.ws_url,
        }
    )
    async with Client(build_server(settings, PROVIDERS)) as client:
        listing = (await client.call_tool("list_models", {})).structured_content
        with_lora = await client.call_tool("generate_image", {"prompt": "a red cube", "seed": 4})
        plain = await client.call_tool("generate_image", {"prompt": "a red cube", "seed": 4, "model": "my_sdxl_plain"})
        gemini = await client.call_tool("generate_image", {"prompt": "a lighthouse", "model": "nano_banana_next"})
        cloud = await client.call_tool("generate_image", {"prompt": "a lighthouse", "model": "juggernaut_xl"})
        lora_pixels, plain_pixels = await pixels(client, with_lora), await pixels(client, plain)

    assert listing is not None
    models = {model["id"]: model for group in listing["providers"] for model in group["models"]}
    assert {
        "flux_local:my_sdxl",
        "flux_local:my_sdxl_plain",
        "gemini:nano_banana_next",
        "runware:juggernaut_xl",
    } <= set(models)
    # A new Runware entry takes Runware's own defaults for what it leaves out.
    assert models["runware:juggernaut_xl"]["capabilities"]["default_steps"] == 20
    assert models["flux_local:my_sdxl"]["default"] and models["flux_local:my_sdxl"]["display_name"] == "my_sdxl"
    # The file's defaults came with the entry; the rest from the pipeline type's.
    assert models["flux_local:my_sdxl"]["capabilities"]["default_steps"] == 2
    assert models["flux_local:my_sdxl"]["capabilities"]["default_guidance"] == 5.0

    assert (with_lora.structured_content or {})["model"] == "flux_local:my_sdxl", text_of(with_lora)
    assert (with_lora.structured_content or {})["parameters"]["loras"] == [
        {"model": None, "path": str(lora), "weight": 1.0}
    ]
    assert np.abs(lora_pixels - plain_pixels).mean() > 3  # the LoRA was applied to the same weights and seed

    assert (gemini.structured_content or {})["model"] == "gemini:nano_banana_next", text_of(gemini)
    assert newer_gemini.requests[-1].model == NEWER_GEMINI

    assert (cloud.structured_content or {})["model"] == "runware:juggernaut_xl", text_of(cloud)
    (task,) = runware.tasks.values()
    assert task.task["model"] == "civitai:133005@782002"
    assert task.task["lora"] == [{"model": "civitai:58390@62833", "weight": 0.7}]


async def test_a_bare_key_two_providers_share_names_both_ids(
    tmp_path: Path, make_settings: Callable[..., Settings], tiny_pipelines: TinyPipelines
) -> None:
    """A local model keyed like a Runware built-in starts fine; only the bare key is ambiguous."""
    config = tmp_path / "config.toml"
    config.write_text(local_entry("juggernaut_pro", tiny_pipelines))
    settings = make_settings(IMAGEGEN_CONFIG=str(config), **tiny_environ(tiny_pipelines))
    async with Client(build_server(settings, PROVIDERS)) as client:
        bare = await client.call_tool("generate_image", {"prompt": "a cube", "model": "juggernaut_pro"})
        full = await client.call_tool("generate_image", {"prompt": "a cube", "model": "flux_local:juggernaut_pro"})
    error = error_of(bare)
    assert error["code"] == "model_not_found"
    assert "flux_local:juggernaut_pro" in error["message"] and "runware:juggernaut_pro" in error["message"]
    assert (full.structured_content or {})["model"] == "flux_local:juggernaut_pro", text_of(full)
