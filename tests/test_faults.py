"""Faults, injected through the loopback vendors and the output folder, driven through a real MCP client.

Every fault class (a vendor answer that is not base64, not an image, truncated, a decompression bomb, bigger than
asked, missing, late, never; a socket dropped mid-task; a vendor quoting the API key back; an output folder that
is a file, lies under a file, cannot be made, or fills up) must end as one of our error codes or an honest
result, with the server still serving afterwards, no secret in anything it said or wrote, and no file that no
result names.
"""

from __future__ import annotations

import errno
import io
import json
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from mcp.client import Client
from mcp_types import BlobResourceContents, CallToolResult, TextResourceContents
from PIL import Image, ImageDraw

from imagegen_mcp import storage
from imagegen_mcp.catalog import ProviderSpec
from imagegen_mcp.config import Settings
from imagegen_mcp.providers.base import GeneratedImage, GenerationRequest, Progress, ProviderResult
from imagegen_mcp.providers.flux_local.config import FLUX_LOCAL_MODELS
from imagegen_mcp.providers.gemini import GeminiProvider
from imagegen_mcp.providers.runware import RunwareProvider
from imagegen_mcp.requests import ImageRequest, fit_request
from imagegen_mcp.server.app import build_server
from imagegen_mcp.testing import FunctionModelConfig, FunctionProvider, draws_images, photo_like_png
from tests.e2e import assert_image_result, error_of, text_of
from tests.fakes.gemini_server import GEMINI_KEY, ErrorReply, FakeGeminiServer, ImageReply, Reply, TextReply
from tests.fakes.runware_api import FakeRunwareAPI
from tests.images import bomb_png

pytestmark = pytest.mark.anyio

#: Long enough to be found wherever it leaks, and distinctive.
RUNWARE_SECRET = "rw-secret-key-7f3a9c2e5b1d"
SECRETS = (RUNWARE_SECRET, GEMINI_KEY)


@dataclass
class World:
    """A connected client, the fakes behind it, and everything the server said, for the checks after a fault."""

    client: Client
    settings: Settings
    gemini: FakeGeminiServer
    runware: FakeRunwareAPI
    said: list[str] = field(default_factory=list)
    named: set[str] = field(default_factory=set)

    async def call(self, tool: str, arguments: dict[str, Any]) -> CallToolResult:
        result = await self.client.call_tool(tool, arguments)
        self.said.append(text_of(result) + json.dumps(result.structured_content))
        for image in (result.structured_content or {}).get("images", []):
            self.named.add(image["id"])
        return result

    async def still_serving(self) -> None:
        """A plain request after the fault succeeds on the backup provider."""
        result = await self.call("generate_image", {"prompt": "after the fault", "model": "backup:backup_model"})
        assert_image_result(result, count=1)

    async def check_nothing_leaked_or_left(self, caplog: pytest.LogCaptureFixture) -> None:
        recent = (await self.client.read_resource("imagegen://generations/recent")).contents[0]
        assert isinstance(recent, TextResourceContents)
        self.said.append(recent.text)
        files = sorted(self.settings.output_dir.iterdir()) if self.settings.output_dir.exists() else []
        pngs = [path for path in files if path.suffix == ".png"]
        assert {path.stem for path in pngs} == self.named, "a file that no result names"
        assert [path for path in files if path.suffix != ".png"] == [], "temporary files were left"
        written = [path.read_bytes() for path in pngs]
        assert self.settings.db_path is not None
        history = sqlite3.connect(self.settings.db_path)
        try:
            rows = json.dumps(history.execute("SELECT * FROM jobs").fetchall(), default=str)
        finally:
            history.close()
        for secret in SECRETS:
            assert all(secret not in text for text in self.said), f"{secret} in a result or resource"
            assert all(secret.encode() not in data for data in written), f"{secret} in a saved PNG"
            assert secret not in rows, f"{secret} in the history"
            assert secret not in caplog.text, f"{secret} in the log"


@pytest.fixture
def world(runware: FakeRunwareAPI, make_settings: Callable[..., Settings]) -> Callable[..., Any]:
    @asynccontextmanager
    async def serve(**environ: str) -> AsyncIterator[World]:
        with FakeGeminiServer(api_keys={GEMINI_KEY}) as gemini:
            runware.api_key = RUNWARE_SECRET
            settings = make_settings(
                RUNWARE_API_KEY=RUNWARE_SECRET,
                RUNWARE_URL=runware.ws_url,
                GEMINI_API_KEY=GEMINI_KEY,
                GEMINI_BASE_URL=gemini.url,
                IMAGEGEN_TIMEOUT_S="2",
                **environ,
            )
            providers: list[ProviderSpec] = [RunwareProvider, GeminiProvider, FunctionProvider(name="backup")]
            async with Client(build_server(settings, providers)) as client:
                yield World(client, settings, gemini, runware)

    return serve


def png_of(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


TRUNCATED = photo_like_png(256, 256, 1)[:3000]
BOMB = bomb_png(40000, 40000)  # 1.6 billion pixels in a few hundred bytes

GEMINI_FAULTS: list[tuple[str, Reply, str]] = [
    ("not base64", ImageReply(data_text="%%% this is not base64 %%%"), "provider_error"),
    ("not an image", ImageReply(data=b"<html>502 Bad Gateway</html>"), "provider_error"),
    ("truncated PNG", ImageReply(data=TRUNCATED), "provider_error"),
    ("decompression bomb", ImageReply(data=BOMB), "provider_error"),
    ("no image", TextReply("I cannot draw that today."), "provider_error"),
    ("late", ImageReply(delay_s=4), "provider_timeout"),
    (
        "quotes the key",
        ErrorReply(400, "INVALID_ARGUMENT", f"Request with key {GEMINI_KEY} is malformed"),
        "provider_error",
    ),
]


@pytest.mark.parametrize(("case", "reply", "code"), GEMINI_FAULTS, ids=[case for case, _, _ in GEMINI_FAULTS])
async def test_gemini_faults_are_structured_errors(
    world: Callable[..., Any], caplog: pytest.LogCaptureFixture, case: str, reply: Reply, code: str
) -> None:
    async with world(IMAGEGEN_FALLBACK="strict") as served:
        served.gemini.on(reply)
        result = await served.call("generate_image", {"prompt": "a lighthouse", "model": "gemini:gemini_3_pro_image"})
        error = error_of(result)
        assert error["code"] == code, text_of(result)
        assert error["provider"] == "gemini"
        assert "Traceback" not in text_of(result)
        await served.still_serving()
        await served.check_nothing_leaked_or_left(caplog)


def truncated_source(width: int, height: int, seed: int, output_format: str) -> bytes:
    return TRUNCATED


def bomb_source(width: int, height: int, seed: int, output_format: str) -> bytes:
    return BOMB


def not_an_image(width: int, height: int, seed: int, output_format: str) -> bytes:
    return b"\x89PNG\r\n\x1a\n but nothing after the signature"


@pytest.mark.parametrize(
    ("case", "fault", "code"),
    [
        ("truncated PNG", {"image_source": truncated_source}, "provider_error"),
        ("decompression bomb", {"image_source": bomb_source}, "provider_error"),
        ("not an image", {"image_source": not_an_image}, "provider_error"),
        ("socket dropped mid-task", {"drop_next": 1}, "provider_error"),
        ("never answers", {"delay_s": 600.0}, "provider_timeout"),
        (
            "quotes the key",
            {"task_error": {"code": "invalidPrompt", "message": f"bad prompt for {RUNWARE_SECRET}"}},
            "invalid_request",
        ),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
@pytest.mark.parametrize(
    ("output", "link"),
    # A slow link: each image is decoded while it downloads (the decode waits for bytes that come late).
    [("url", None), ("url", 20_000.0), ("base64", None)],
    ids=["url", "url-slow-link", "base64"],
)
async def test_runware_faults_are_structured_errors(
    world: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
    case: str,
    fault: dict[str, Any],
    code: str,
    output: str,
    link: float | None,
) -> None:
    async with world(IMAGEGEN_FALLBACK="strict", RUNWARE_OUTPUT=output) as served:
        served.runware.download_bytes_per_s = link
        for name, value in fault.items():
            setattr(served.runware, name, value)
        result = await served.call(
            "generate_image", {"prompt": "a lighthouse", "model": "runware:flux_schnell", "count": 2}
        )
        error = error_of(result)
        assert error["code"] == code, text_of(result)
        assert error["provider"] == "runware"
        await served.still_serving()
        await served.check_nothing_leaked_or_left(caplog)


async def test_a_vendor_quoting_the_key_then_a_successful_fallback_leaks_it_nowhere(
    world: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    async with world() as served:
        served.runware.task_error = {"code": "providerUnavailable", "message": f"upstream refused key {RUNWARE_SECRET}"}
        served.gemini.on(ErrorReply(503, "UNAVAILABLE", f"overloaded while serving key {GEMINI_KEY}"))
        result = await served.call("generate_image", {"prompt": "a lighthouse", "model": "runware:flux_schnell"})
        assert_image_result(result, count=1)
        output = result.structured_content or {}
        assert output["fell_back"] is True and output["model"] == "backup:backup_model"
        assert [attempt["outcome"] for attempt in output["attempts"]] == ["failed", "failed", "succeeded"]
        assert "***" in output["attempts"][0]["reason"]  # the reason is kept, the key scrubbed from it
        search = await served.call("search_images", {"query": "lighthouse"})
        assert (search.structured_content or {})["images"]
        await served.check_nothing_leaked_or_left(caplog)


async def test_an_image_bigger_than_asked_is_said_in_adjustments(
    world: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    def double(width: int, height: int, seed: int, output_format: str) -> bytes:
        return photo_like_png(width * 2, height * 2, seed)

    async with world() as served:
        served.runware.image_source = double
        result = await served.call(
            "generate_image", {"prompt": "a fox", "model": "runware:flux_schnell", "width": 512, "height": 512}
        )
        (image,) = assert_image_result(result, count=1)
        assert (image["width"], image["height"]) == (1024, 1024)
        assert (
            "runware:flux_schnell answered 1024x1024, not the 512x512 it was asked for"
            in (result.structured_content or {})["adjustments"]
        )
        await served.check_nothing_leaked_or_left(caplog)


async def test_fewer_images_than_asked_are_said_in_adjustments(make_settings: Callable[..., Settings]) -> None:
    async def one_short(request: GenerationRequest, model: FunctionModelConfig, progress: Progress) -> ProviderResult:
        drawn = await draws_images(request, model, progress)
        return ProviderResult(images=drawn.images[:-1])

    async with Client(build_server(make_settings(), [FunctionProvider(one_short, name="stingy")])) as client:
        result = await client.call_tool(
            "generate_image", {"prompt": "three foxes", "count": 3, "width": 64, "height": 64}
        )
    assert_image_result(result, count=2)
    assert (
        "2 of the 3 images asked for: stingy:stingy_model made no more"
        in (result.structured_content or {})["adjustments"]
    )


async def test_a_huge_one_bit_png_is_stored_with_a_preview(make_settings: Callable[..., Settings]) -> None:
    big = Image.new("1", (12000, 12000), 1)
    ImageDraw.Draw(big).rectangle((3000, 3000, 9000, 9000), fill=0)
    data = png_of(big)

    async def line_art(request: GenerationRequest, model: FunctionModelConfig, progress: Progress) -> ProviderResult:
        return ProviderResult(images=[GeneratedImage(data, "image/png", request.seed_of(0))])

    model = FunctionModelConfig(key="line_art", max_resolution=8192)
    provider = FunctionProvider(line_art, name="plotter", models=[model])
    async with Client(build_server(make_settings(), [provider])) as client:
        result = await client.call_tool("generate_image", {"prompt": "a square", "width": 4096, "height": 4096})
        (image,) = assert_image_result(result, count=1)
        (blob,) = (await client.read_resource(image["uri"])).contents
        (thumbnail,) = (await client.read_resource(image["uri"] + "/thumbnail")).contents
    assert (image["width"], image["height"]) == (12000, 12000)
    assert isinstance(blob, BlobResourceContents)
    assert isinstance(thumbnail, BlobResourceContents) and thumbnail.mime_type == "image/webp"


async def test_a_negative_prompt_that_cannot_act_is_said() -> None:
    lightning = next(model for model in FLUX_LOCAL_MODELS if model.key == "lightning_4step")
    request = ImageRequest(prompt="a fox", negative_prompt="blurry")
    job, adjustments = fit_request(request, lightning, "flux_local:lightning_4step", primary=True, seed=1)
    assert job.negative_prompt is None
    assert adjustments == [
        "negative_prompt ignored: at guidance_scale 0 flux_local:lightning_4step runs without classifier-free "
        "guidance, which a negative prompt needs; pass guidance_scale above 1 for it to act"
    ]
    guided, notes = fit_request(
        request.model_copy(update={"guidance_scale": 3.0}),
        lightning,
        "flux_local:lightning_4step",
        primary=True,
        seed=1,
    )
    assert guided.negative_prompt == "blurry" and notes == []


def file_in_the_way(tmp_path: Path) -> Path:
    (tmp_path / "occupied").write_text("not a folder")
    return tmp_path / "occupied"


def under_a_file(tmp_path: Path) -> Path:
    return file_in_the_way(tmp_path) / "images"


def cannot_be_made(tmp_path: Path) -> Path:
    return Path("/sys/imagegen-images")  # sysfs takes no new folders, even from root


@pytest.mark.parametrize("folder", [file_in_the_way, under_a_file, cannot_be_made])
async def test_an_unusable_output_folder_is_a_storage_error_naming_it(
    make_settings: Callable[..., Settings], tmp_path: Path, folder: Callable[[Path], Path]
) -> None:
    output = folder(tmp_path)
    settings = make_settings(IMAGEGEN_OUTPUT_DIR=str(output))
    async with Client(build_server(settings, [FunctionProvider(name="backup")])) as client:
        result = await client.call_tool("generate_image", {"prompt": "a fox", "width": 64, "height": 64})
        listing = await client.call_tool("list_providers", {})
    error = error_of(result)
    assert error["code"] == "storage_error"
    assert str(output) in error["message"] and error["details"]["variable"] == "IMAGEGEN_OUTPUT_DIR"
    assert any("IMAGEGEN_OUTPUT_DIR" in step for step in error["remediation"])
    assert not listing.is_error  # still serving


async def test_a_full_disk_keeps_none_of_the_call_and_the_server_recovers(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Room for one image of four: the one written is taken back; once there is room again, all are saved."""
    settings = make_settings()
    real_write = storage.atomic_write
    room = [1]

    def disk_with_room_for(path: Path, data: bytes) -> None:
        if not room[0]:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        room[0] -= 1
        real_write(path, data)

    monkeypatch.setattr(storage, "atomic_write", disk_with_room_for)
    async with Client(build_server(settings, [FunctionProvider(name="backup")])) as client:
        full = await client.call_tool("generate_image", {"prompt": "four foxes", "count": 4, "width": 64, "height": 64})
        assert list(settings.output_dir.glob("*.png")) == []
        room[0] = 10
        fine = await client.call_tool("generate_image", {"prompt": "four foxes", "count": 4, "width": 64, "height": 64})
    error = error_of(full)
    assert error["code"] == "storage_error" and error["retryable"] is True
    assert "No space left on device" in error["message"] and "Free space" in error["remediation"][0]
    images = assert_image_result(fine, count=4)
    assert sorted(path.stem for path in settings.output_dir.glob("*.png")) == sorted(image["id"] for image in images)
