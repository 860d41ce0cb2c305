"""The gallery page for people (``GET /gallery`` on streamable HTTP, and ``imagegen-mcp gallery``), in headless
Chromium against a real server on loopback: the grid, search and filters, the bytes it loads, the checks it
shares with ``/mcp`` (Host and Origin, the bearer token)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client
from playwright.async_api import Page, Request, expect

from imagegen_mcp.config import Settings
from imagegen_mcp.server.app import build_server
from imagegen_mcp.server.http import http_app
from imagegen_mcp.testing import FunctionProvider
from tests.browser import chromium, save_screenshot, serving
from tests.e2e import REPO, clean_environ, write_palette_plugin

pytestmark = pytest.mark.anyio

SUBJECTS = ("a lighthouse on a cliff", "a red fox in the snow", "a city street at night")
TOKEN = "gallery-" + "7" * 32
ALL_LOADED = "() => [...document.querySelectorAll('#grid img')].every(i => i.complete && i.naturalWidth > 0)"


def app_for(settings: Settings) -> Any:
    providers = [FunctionProvider(name=name, settings=settings) for name in ("alpha", "beta")]
    return http_app(build_server(settings, providers), settings, "streamable-http", "127.0.0.1")


async def fill(mcp: Client) -> list[dict[str, Any]]:
    """Thirty images, ten calls of three, by two providers; returns search_images' list of them."""
    for index in range(10):
        arguments = {
            "prompt": f"{SUBJECTS[index % 3]}, study {index}",
            "provider": "alpha" if index % 2 else "beta",
            "count": 3,
            "width": 512,
            "height": 512,
        }
        assert not (await mcp.call_tool("generate_image", arguments)).is_error
    listed = (await mcp.call_tool("search_images", {"limit": 100})).structured_content
    assert listed is not None
    images: list[dict[str, Any]] = listed["images"]
    assert len(images) == 30
    return images


async def grid(page: Page) -> list[dict[str, Any]]:
    await page.wait_for_function(ALL_LOADED)
    tiles: list[dict[str, Any]] = await page.eval_on_selector_all(
        "#grid img", "images => images.map(i => ({id: i.dataset.id, alt: i.alt, width: i.naturalWidth}))"
    )
    return tiles


async def test_the_gallery_lists_searches_and_filters_the_history_loading_thumbnails_only(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings()
    with serving(app_for(settings)) as base:
        async with Client(f"{base}/mcp") as mcp:
            images = await fill(mcp)
        async with chromium(tmp_path / "profile", viewport={"width": 1000, "height": 900}) as browser:
            page = await browser.new_page()
            bodies: list[dict[str, Any]] = []
            problems: list[str] = []

            def sent(request: Request) -> None:
                if request.url == f"{base}/mcp" and isinstance(body := request.post_data_json, dict):
                    bodies.append(body)

            page.on("request", sent)
            page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
            await page.goto(f"{base}/gallery")
            await expect(page.locator("#grid img")).to_have_count(30)
            tiles = await grid(page)

            # Newest first, as search_images lists them, each image described by its prompt.
            assert [tile["id"] for tile in tiles] == [image["id"] for image in images]
            assert [tile["alt"] for tile in tiles] == [image["prompt"] for image in images]
            assert {tile["width"] for tile in tiles} == {256}
            # Thumbnails only: no full image was read, and the grid cost a small part of the PNGs' bytes.
            read = sorted(body["params"]["uri"] for body in bodies if body["method"] == "resources/read")
            assert read == sorted(f"{image['uri']}/thumbnail" for image in images)
            loaded = await page.evaluate(
                "() => performance.getEntriesByType('resource').filter(e => e.name.endsWith('/mcp'))"
                ".reduce((total, e) => total + e.encodedBodySize, 0)"
            )
            stored = sum(path.stat().st_size for path in settings.output_dir.rglob("*.png"))
            assert 0 < loaded * 10 < stored
            await save_screenshot(page, "gallery.jpg", tmp_path)

            # The search box is search_images' search; the filters narrow it further.
            await page.fill("#query", "fox")
            await expect(page.locator("#grid img")).to_have_count(9)
            assert all("red fox" in tile["alt"] for tile in await grid(page))
            await page.select_option("#provider", "alpha")
            await expect(page.locator("#grid img")).to_have_count(6)
            assert await page.locator("#provider option").all_inner_texts() == ["All providers", "alpha", "beta"]
            await page.select_option("#model", "alpha:alpha_model")
            await expect(page.locator("#grid img")).to_have_count(6)
            await page.fill("#query", "")
            await expect(page.locator("#grid img")).to_have_count(15)

            # A tile opens the viewer at full resolution; the back button returns to the grid.
            await page.locator("#grid button").first.click()
            await page.wait_for_function("() => document.getElementById('full').src.startsWith('data:image/png')")
            assert await page.eval_on_selector("#full", "i => i.naturalWidth") == 512
            await page.get_by_role("button", name="← Gallery").click()
            await expect(page.locator("#grid")).to_be_visible()

            # From the keyboard: Tab reaches the search box, the filters, then the tiles; Enter opens one.
            await page.focus("body")
            reached = []
            for _ in range(5):
                await page.keyboard.press("Tab")
                reached.append(await page.evaluate("document.activeElement.id || document.activeElement.tagName"))
            assert reached == ["query", "provider", "model", "BUTTON", "BUTTON"]
            await page.keyboard.press("Enter")
            await expect(page.locator("#viewer")).to_be_visible()
            assert problems == []


async def test_the_gallery_is_refused_to_other_origins_and_hosts(make_settings: Callable[..., Settings]) -> None:
    with serving(app_for(make_settings())) as base:
        async with httpx2.AsyncClient() as http:
            page = await http.get(f"{base}/gallery")
            foreign = await http.get(f"{base}/gallery", headers={"origin": "http://evil.example"})
            rebound = await http.get(f"{base}/gallery", headers={"host": "evil.example"})
            local = await http.get(f"{base}/gallery", headers={"origin": base})
    assert page.status_code == local.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'sha256-" in policy and "connect-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert foreign.status_code == 403 and rebound.status_code == 421
    assert "<html" not in foreign.text and "<html" not in rebound.text


async def test_with_a_token_there_is_no_page_without_it(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    settings = make_settings(IMAGEGEN_AUTH_TOKEN=TOKEN)
    with serving(app_for(settings)) as base:
        async with httpx2.AsyncClient() as http:
            missing = await http.get(f"{base}/gallery")
            wrong = await http.get(f"{base}/gallery", headers={"authorization": "Bearer nope"})
        assert missing.status_code == wrong.status_code == 401
        assert "<html" not in missing.text and TOKEN not in missing.text

        authorised = {"authorization": f"Bearer {TOKEN}"}
        async with (
            httpx2.AsyncClient(headers=authorised) as http,
            Client(streamable_http_client(f"{base}/mcp", http_client=http)) as mcp,
        ):
            await mcp.call_tool("generate_image", {"prompt": "a guarded lighthouse", "width": 256, "height": 256})
        async with chromium(tmp_path / "profile", extra_http_headers=authorised) as browser:
            page = await browser.new_page()
            await page.goto(f"{base}/gallery")
            await expect(page.locator("#grid img")).to_have_count(1)
            assert [tile["alt"] for tile in await grid(page)] == ["a guarded lighthouse"]


def test_the_gallery_command_serves_the_page_on_loopback_and_prints_its_url(tmp_path: Path) -> None:
    env = clean_environ(
        IMAGEGEN_OUTPUT_DIR=str(tmp_path / "out"),
        IMAGEGEN_DEFAULT_PROVIDER="palette",
        PYTHONPATH=write_palette_plugin(tmp_path / "plugin"),
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "imagegen_mcp", "gallery"],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("Gallery at http://127.0.0.1:") and line.rstrip().endswith("/gallery (Ctrl-C stops it)")
        url = line.split()[2]
        page = httpx2.get(url, timeout=30)
        foreign = httpx2.get(url, headers={"origin": "http://evil.example"}, timeout=30)
        assert page.status_code == 200 and "<title>Images</title>" in page.text
        assert foreign.status_code == 403
    finally:
        process.terminate()
        process.wait(timeout=15)
    assert process.returncode in (0, -15)
