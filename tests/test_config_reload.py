"""Reading the config file again without a restart: SIGHUP for the process, ``reload_config`` in process.
Models appear and disappear, clients of both protocol eras hear of it, and a broken file changes nothing."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.client import Client
from mcp_types import TextResourceContents

from imagegen_mcp.config import Settings
from imagegen_mcp.providers.gemini import GeminiProvider
from imagegen_mcp.server.app import build_app
from tests.e2e import clean_environ, error_of, stdio_parameters, text_of
from tests.fakes.gemini_server import GEMINI_KEY, FakeGeminiServer

pytestmark = pytest.mark.anyio


def gemini_entry(key: str) -> str:
    return f'[[models.gemini]]\nkey = "{key}"\napi_model = "gemini-3-pro-image"\n'


async def model_ids(client: Client) -> set[str]:
    listing = (await client.call_tool("list_models", {"provider": "gemini"})).structured_content
    assert listing is not None
    return {model["id"] for group in listing["providers"] for model in group["models"]}


async def test_a_reload_adds_and_removes_models_and_tells_listening_clients(
    tmp_path: Path, api: FakeGeminiServer, make_settings: Callable[..., Settings]
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(gemini_entry("first"))
    settings = make_settings(IMAGEGEN_CONFIG=str(config), GEMINI_API_KEY=GEMINI_KEY, GEMINI_BASE_URL=api.url)
    app = build_app(settings, [GeminiProvider])
    async with Client(app.server) as client:
        assert client.protocol_version == "2026-07-28"
        before = await model_ids(client)
        async with client.listen(resources_list_changed=True) as events:
            config.write_text(gemini_entry("second"))
            assert await app.reload_config()
            with anyio.fail_after(5):
                event = await anext(aiter(events))
        after = await model_ids(client)
        catalog = (await client.read_resource("imagegen://models")).contents[0]
        served = await client.call_tool("generate_image", {"prompt": "a boat", "model": "gemini:second"})
        gone = await client.call_tool("generate_image", {"prompt": "a boat", "model": "gemini:first"})
        assert not await app.reload_config()  # the same file again: nothing changed

    assert type(event).__name__ == "ResourcesListChanged"
    assert "gemini:first" in before and "gemini:second" not in before
    assert "gemini:second" in after and "gemini:first" not in after
    assert isinstance(catalog, TextResourceContents) and '"gemini:second"' in catalog.text
    assert (served.structured_content or {})["model"] == "gemini:second", text_of(served)
    assert error_of(gone)["code"] == "model_not_found"


async def test_a_broken_file_on_reload_changes_nothing(
    tmp_path: Path, make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(gemini_entry("kept") + '[providers.gemini]\ndefault_model = "kept"\n')
    app = build_app(make_settings(IMAGEGEN_CONFIG=str(config)), [GeminiProvider])
    async with Client(app.server) as client:
        # One provider's entry is fine and the next is not: neither is applied.
        config.write_text(gemini_entry("new") + gemini_entry("broken") + "stepz = 1\n")
        assert not await app.reload_config()
        assert "gemini:kept" in await model_ids(client)
        assert "gemini:new" not in await model_ids(client)
    assert "The config file was not applied; the models stay as they were." in caplog.text
    assert "stepz" in caplog.text and str(config) in caplog.text


def server_pid(marker: str) -> int:
    """The pid of the server process started with ``marker`` on its command line (the stdio client started it
    and does not say)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    return int(entry.name)
            except OSError:
                continue
    raise AssertionError(f"no process with {marker} on its command line")


@pytest.mark.skipif(not Path("/proc").is_dir() or not hasattr(signal, "SIGHUP"), reason="needs /proc and SIGHUP")
async def test_sighup_reloads_a_stdio_server_and_notifies_a_handshake_client(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(gemini_entry("first"))
    changed = anyio.Event()

    async def on_message(message: Any) -> None:
        if getattr(message, "method", None) == "notifications/resources/list_changed":
            changed.set()

    env = clean_environ(IMAGEGEN_OUTPUT_DIR=str(tmp_path / "images"))
    parameters = stdio_parameters(env, "--config", str(config))
    async with Client(parameters, mode="legacy", message_handler=on_message) as client:
        capabilities = client.session.server_capabilities
        assert capabilities is not None and capabilities.resources is not None
        assert capabilities.resources.list_changed is True
        assert "gemini:first" in await model_ids(client)
        config.write_text(gemini_entry("second"))
        os.kill(server_pid(str(config)), signal.SIGHUP)
        with anyio.fail_after(10):
            await changed.wait()
        models = await model_ids(client)
        providers = (await client.read_resource("imagegen://providers")).contents[0]
    assert "gemini:second" in models and "gemini:first" not in models
    assert isinstance(providers, TextResourceContents)
    assert json.loads(providers.text)["providers"]  # still serving after the signal
