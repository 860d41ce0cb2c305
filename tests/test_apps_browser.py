"""The viewer as an MCP Apps host renders it, in headless Chromium: the test host page loads the ``ui://``
resource, bridges it to an in-memory server, and the test clicks through it.

The main test runs against the loopback Runware API through the real Runware provider when its SDK is installed,
and always against a scripted provider that draws photo-like images (which also serves the other tests, and
can edit)."""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Callable
from pathlib import Path

import pytest
from mcp.client import Client
from PIL import Image
from playwright.async_api import Frame, expect

from imagegen_mcp.catalog import ProviderSpec
from imagegen_mcp.config import Settings
from imagegen_mcp.providers.base import GenerationRequest, ImageInputs, Progress, ProviderResult
from imagegen_mcp.providers.runware import RunwareProvider
from imagegen_mcp.server.app import build_server
from imagegen_mcp.server.apps import APP_URI
from imagegen_mcp.testing import FunctionModelConfig, FunctionProvider, draws_images
from tests.browser import AppsHost, apps_client_extension, chromium, save_screenshot
from tests.e2e import assert_image_result
from tests.fakes.runware_api import COST_PER_IMAGE, DEFAULT_KEY, FakeRunwareAPI

pytestmark = pytest.mark.anyio

PROMPT = "a lighthouse on a cliff at dusk, long exposure"
ARGUMENTS = {"prompt": PROMPT, "width": 768, "height": 512, "seed": 7}
STUDIO = FunctionModelConfig(key="studio", display_name="Studio", inputs=ImageInputs(image_to_image=True))
Backend = tuple[Settings, list[ProviderSpec]]


async def priced_photos(request: GenerationRequest, model: FunctionModelConfig, progress: Progress) -> ProviderResult:
    return dataclasses.replace(await draws_images(request, model, progress), cost=COST_PER_IMAGE * request.count)


def studio(settings: Settings) -> FunctionProvider:
    return FunctionProvider(priced_photos, name="studio", models=[STUDIO], settings=settings)


@pytest.fixture
def function_backend(make_settings: Callable[..., Settings]) -> Backend:
    settings = make_settings()
    return settings, [studio(settings)]


@pytest.fixture(params=["runware", "function"])
def backend(request: pytest.FixtureRequest, make_settings: Callable[..., Settings]) -> Backend:
    if request.param == "function":
        settings = make_settings()
        return settings, [studio(settings)]
    runware: FakeRunwareAPI = request.getfixturevalue("runware")
    settings = make_settings(RUNWARE_API_KEY=DEFAULT_KEY, RUNWARE_URL=runware.ws_url, RUNWARE_HTTP_URL=runware.http_url)
    availability = RunwareProvider(settings).check()
    if not availability.met:
        pytest.skip(f"the Runware provider cannot run here: {availability.reason}")
    return settings, [RunwareProvider]


LOADED_PNG = "s => { const i = document.querySelector(s); return i.complete && i.src.startsWith('data:image/png'); }"


async def natural_size(frame: Frame, selector: str) -> tuple[int, int]:
    """The natural size of the image ``selector`` names, once it holds a PNG (the full image, not a preview)."""
    await frame.wait_for_function(LOADED_PNG, arg=selector)
    width, height = await frame.eval_on_selector(selector, "i => [i.naturalWidth, i.naturalHeight]")
    return int(width), int(height)


async def test_viewer_shows_the_full_image_and_makes_a_variation_with_another_seed(
    backend: Backend, tmp_path: Path
) -> None:
    settings, providers = backend
    server = build_server(settings, providers)
    async with (
        Client(server, extensions=[apps_client_extension()]) as client,
        chromium(tmp_path / "profile", viewport={"width": 780, "height": 900}) as browser,
    ):
        result = await client.call_tool("generate_image", ARGUMENTS)
        [image] = assert_image_result(result, count=1)
        host = await AppsHost.open(browser, client, APP_URI)
        view = await host.show("generate_image", ARGUMENTS, result)

        # Full resolution: the image element holds the stored PNG itself, read through resources/read.
        assert await natural_size(view, "#full") == Image.open(image["path"]).size == (768, 512)
        assert ("resources/read", {"uri": image["uri"]}) in host.proxied
        assert await view.get_attribute("#full", "alt") == PROMPT
        facts = await view.inner_text("#facts")
        model = result.structured_content["model"] if result.structured_content else None
        assert (
            f"Model\n{model}\n" in facts
            and f"Seed\n{image['seed']}\n" in facts
            and f"Cost\n${COST_PER_IMAGE:.4f}\n" in facts
        )

        await view.get_by_role("button", name="New variation").click()
        strip = view.locator("#strip button")
        await expect(strip).to_have_count(2)
        seeds = [int(seed or "") for seed in [await button.get_attribute("data-seed") for button in await strip.all()]]
        assert seeds[0] == image["seed"] and seeds[1] != seeds[0]
        [variation] = [params for method, params in host.proxied if method == "tools/call"]
        assert variation["name"] == "generate_image"
        assert variation["arguments"] == {**ARGUMENTS, "seed": seeds[1], "count": 1}
        # The second image is shown large, at full resolution too, and has its own file.
        await expect(view.locator("#full")).to_have_attribute(
            "data-id", await strip.nth(1).get_attribute("data-id") or ""
        )
        assert await natural_size(view, "#full") == (768, 512)
        assert len(list(settings.output_dir.rglob("*.png"))) == 2

        shot = Image.open(io.BytesIO(await save_screenshot(host.page.locator("iframe"), "viewer.jpg", tmp_path)))
        assert shot.size[0] >= 720


async def test_viewer_follows_the_host_theme(function_backend: Backend, tmp_path: Path) -> None:
    server = build_server(*function_backend)
    async with (
        Client(server, extensions=[apps_client_extension()]) as client,
        chromium(tmp_path / "profile") as browser,
    ):
        result = await client.call_tool("generate_image", ARGUMENTS)
        host = await AppsHost.open(browser, client, APP_URI)
        dark = await host.show("generate_image", ARGUMENTS, result, theme="dark")
        await natural_size(dark, "#full")
        background = await dark.evaluate("getComputedStyle(document.body).backgroundColor")
        text = await dark.evaluate("getComputedStyle(document.body).color")
        await save_screenshot(host.page.locator("iframe"), "viewer-dark.jpg", tmp_path)
        host_light = await AppsHost.open(browser, client, APP_URI)
        light = await host_light.show("generate_image", ARGUMENTS, result, theme="light")
        await natural_size(light, "#full")
        assert luminance(background) < 0.2 < 0.8 < luminance(text)
        assert luminance(await light.evaluate("getComputedStyle(document.body).backgroundColor")) > 0.8


def luminance(css_color: str) -> float:
    """0 (black) to 1 (white) for an ``rgb(r, g, b)`` value."""
    red, green, blue = (int(part) for part in css_color.removeprefix("rgb(").rstrip(")").split(",")[:3])
    return (0.2126 * red + 0.7152 * green + 0.0722 * blue) / 255


async def test_every_image_has_alt_text_and_every_action_is_reachable_by_keyboard(
    function_backend: Backend, tmp_path: Path
) -> None:
    server = build_server(*function_backend)
    async with (
        Client(server, extensions=[apps_client_extension()]) as client,
        chromium(tmp_path / "profile") as browser,
    ):
        arguments = {**ARGUMENTS, "count": 2}
        result = await client.call_tool("generate_image", arguments)
        host = await AppsHost.open(browser, client, APP_URI)
        view = await host.show("generate_image", arguments, result)
        await natural_size(view, "#full")
        await expect(view.locator("#strip button")).to_have_count(2)

        alts = await view.eval_on_selector_all("img", "images => images.map(i => i.alt)")
        assert alts and all(alt.strip() for alt in alts)
        assert PROMPT in alts

        reached = await tab_through(host, view, presses=20)
        for control in ("variation", "open", "delete", "instruction", "apply-edit", "strip:0", "strip:1"):
            assert control in reached, (control, reached)

        # Every action works from the keyboard: the second image, full size (Escape closes it), a variation.
        await focus(host, view, "strip:1")
        await host.page.keyboard.press("Enter")
        await expect(view.locator("#strip button").nth(1)).to_have_attribute("aria-current", "true")
        await focus(host, view, "open")
        await host.page.keyboard.press("Enter")
        await expect(view.locator("#lightbox")).to_have_attribute("open", "")
        await host.page.keyboard.press("Escape")
        await expect(view.locator("#lightbox")).not_to_have_attribute("open", "")
        await focus(host, view, "variation")
        await host.page.keyboard.press("Enter")
        await expect(view.locator("#strip button")).to_have_count(3)


FOCUSED = """() => {
  const node = document.activeElement;
  if (!node || node === document.body) return null;
  const strip = [...document.querySelectorAll('#strip button')].indexOf(node);
  return strip >= 0 ? `strip:${strip}` : node.id;
}"""


async def tab_through(host: AppsHost, view: Frame, presses: int) -> list[str]:
    """The controls the Tab key reaches in the View, in order, from the top of the host page."""
    await host.page.focus("body")
    reached: list[str] = []
    for _ in range(presses):
        await host.page.keyboard.press("Tab")
        name = await view.evaluate(FOCUSED)
        if name:
            reached.append(str(name))
    return reached


async def focus(host: AppsHost, view: Frame, control: str) -> None:
    """Move the focus with the Tab key alone until ``control`` has it."""
    await host.page.focus("body")
    for _ in range(30):
        await host.page.keyboard.press("Tab")
        if await view.evaluate(FOCUSED) == control:
            return
    raise AssertionError(f"Tab never reached {control}")


async def test_an_edit_shows_its_lineage_and_delete_removes_the_image(
    function_backend: Backend, tmp_path: Path
) -> None:
    server = build_server(*function_backend)
    async with (
        Client(server, extensions=[apps_client_extension()]) as client,
        chromium(tmp_path / "profile") as browser,
    ):
        result = await client.call_tool("generate_image", ARGUMENTS)
        [image] = assert_image_result(result, count=1)
        host = await AppsHost.open(browser, client, APP_URI)
        view = await host.show("generate_image", ARGUMENTS, result)
        await natural_size(view, "#full")

        await view.fill("#instruction", "make the sky darker")
        await view.press("#instruction", "Enter")
        await expect(view.locator("#strip button")).to_have_count(2)
        [edit] = [params for method, params in host.proxied if method == "tools/call"]
        assert edit == {"name": "edit_image", "arguments": {"image": image["uri"], "prompt": "make the sky darker"}}
        await expect(view.locator("#facts")).to_contain_text("image_to_image")
        # The edit names the image it came from; that image lists the edit among its children.
        await expect(view.locator("#parents img")).to_have_attribute("alt", PROMPT)
        edited_id = await view.get_attribute("#full", "data-id")
        await view.locator("#parents button").click()
        await expect(view.locator("#full")).to_have_attribute("data-id", image["id"])
        await expect(view.locator("#children img")).to_have_attribute("alt", "make the sky darker")

        # Delete asks once more, then removes the file and the image from the view.
        await view.locator("#children button").click()
        await expect(view.locator("#full")).to_have_attribute("data-id", edited_id or "")
        await view.get_by_role("button", name="Delete").click()
        await view.get_by_role("button", name="Confirm delete").click()
        await expect(view.locator("#full")).to_have_attribute("data-id", image["id"])
        assert ("tools/call", {"name": "delete_image", "arguments": {"image_id": edited_id}}) in host.proxied
        assert [path.stem for path in function_backend[0].output_dir.rglob("*.png")] == [image["id"]]
        await expect(view.locator("#lineage")).to_be_hidden()


async def test_a_search_result_opens_as_a_gallery_and_a_tile_opens_the_viewer(
    function_backend: Backend, tmp_path: Path
) -> None:
    server = build_server(*function_backend)
    async with (
        Client(server, extensions=[apps_client_extension()]) as client,
        chromium(tmp_path / "profile") as browser,
    ):
        for subject in ("a lighthouse", "a lighthouse keeper", "a fox"):
            await client.call_tool("generate_image", {"prompt": subject, "width": 512, "height": 512})
        arguments = {"query": "lighthouse"}
        found = await client.call_tool("search_images", arguments)
        host = await AppsHost.open(browser, client, APP_URI)
        view = await host.show("search_images", arguments, found)

        await expect(view.locator("#grid img")).to_have_count(2)
        assert await view.input_value("#query") == "lighthouse"
        await view.wait_for_function(
            "() => [...document.querySelectorAll('#grid img')].every(i => i.src.startsWith('data:image/webp'))"
        )
        reads = [params["uri"] for method, params in host.proxied if method == "resources/read"]
        assert all(uri.endswith("/thumbnail") for uri in reads) and len(reads) == 2
        await view.locator("#grid button").first.click()
        assert await natural_size(view, "#full") == (512, 512)
        assert await view.get_attribute("#full", "alt") == "a lighthouse keeper"
        await view.get_by_role("button", name="← Gallery").click()
        await expect(view.locator("#grid")).to_be_visible()


async def test_a_job_handle_is_followed_until_its_images_are_shown(function_backend: Backend, tmp_path: Path) -> None:
    server = build_server(*function_backend)
    async with (
        Client(server, extensions=[apps_client_extension()]) as client,
        chromium(tmp_path / "profile") as browser,
    ):
        arguments = {**ARGUMENTS, "wait_s": 0}
        handle = await client.call_tool("generate_image", arguments)
        assert handle.structured_content and "job" in handle.structured_content
        host = await AppsHost.open(browser, client, APP_URI)
        view = await host.show("generate_image", arguments, handle)
        assert await natural_size(view, "#full") == (768, 512)
        [poll] = [params for method, params in host.proxied if method == "tools/call"]
        assert poll["name"] == "get_job" and poll["arguments"]["job_id"] == handle.structured_content["job"]["id"]
