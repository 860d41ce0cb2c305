"""Runware beyond the configured models, end to end through a real MCP client, the real ``runware-sdk`` and the
loopback Runware API: ``search_models``, any AIR id in ``generate_image``, LoRAs, and edits (seed image with
strength, mask, and Kontext's reference images), each input image uploaded once."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mcp.client import Client
from mcp_types import BlobResourceContents
from PIL import Image

from imagegen_mcp.catalog import ProviderSpec
from imagegen_mcp.config import Settings
from imagegen_mcp.providers.runware import RunwareProvider
from imagegen_mcp.server.app import build_server
from imagegen_mcp.testing import photo_like_png
from tests.e2e import assert_image_result, error_of, text_of
from tests.fakes.runware_api import DEFAULT_KEY, FakeRunwareAPI
from tests.images import data_uri, solid_png

pytestmark = pytest.mark.anyio

RUNWARE_ONLY: list[ProviderSpec] = [RunwareProvider]


@pytest.fixture
def settings(runware: FakeRunwareAPI, make_settings: Callable[..., Settings]) -> Callable[..., Settings]:
    def make(**environ: str) -> Settings:
        return make_settings(
            RUNWARE_API_KEY=DEFAULT_KEY, RUNWARE_URL=runware.ws_url, RUNWARE_HTTP_URL=runware.http_url, **environ
        )

    return make


async def test_search_models_answers_from_runware_and_a_found_id_generates(
    settings: Callable[..., Settings], runware: FakeRunwareAPI
) -> None:
    async with Client(build_server(settings(), RUNWARE_ONLY)) as client:
        found = await client.call_tool("search_models", {"query": "juggernaut", "category": "checkpoint"})
        again = await client.call_tool("search_models", {"query": "juggernaut", "category": "checkpoint"})
        loras = await client.call_tool("search_models", {"query": "lineart", "category": "lora"})
        listing = (await client.call_tool("list_models", {})).structured_content
        output = found.structured_content or {}
        xl = next(model for model in output["models"] if model["vendor_id"] == "civitai:133005@782002")
        result = await client.call_tool("generate_image", {"prompt": "a red fox in the snow", "model": xl["id"]})

    assert not found.is_error, text_of(found)
    assert output["searched"] == ["runware"]
    assert {model["vendor_id"] for model in output["models"]} >= {"rundiffusion:130@100", "civitai:133005@782002"}
    assert xl == {
        "id": "runware:civitai:133005@782002",
        "vendor_id": "civitai:133005@782002",
        "name": "Juggernaut XL",
        "version": "Ragnarok",
        "category": "checkpoint",
        "architecture": "sdxl",
        "tags": ["photorealistic"],
        "default_width": 1024,
        "default_height": 1024,
        "default_steps": 20,
        "default_guidance": 7.0,
        "trigger_words": None,
    }
    assert again.structured_content == found.structured_content
    (lora,) = (loras.structured_content or {})["models"]
    assert lora["category"] == "lora" and lora["trigger_words"] == "lineart"
    assert "runware:civitai:133005@782002" in text_of(found)
    # Cached: the same search is asked once; the AIR id's lookup for the generation is one more.
    assert [search["search"] for search in runware.searches] == ["juggernaut", "lineart", "civitai:133005@782002"]
    assert listing is not None
    listed = {model["id"] for group in listing["providers"] for model in group["models"]}
    assert "runware:civitai:133005@782002" not in listed  # the listings keep to the configured models

    assert_image_result(result, count=1)
    structured = result.structured_content or {}
    assert structured["model"] == "runware:civitai:133005@782002"
    assert "from Runware's model search (Juggernaut XL)" in structured["adjustments"][0]
    (task,) = runware.tasks.values()
    assert task.task["model"] == "civitai:133005@782002"
    assert (task.task["steps"], task.task["CFGScale"]) == (20, 7.0)


async def test_an_air_id_runware_does_not_list_runs_on_runware_defaults_and_a_lora_id_is_refused(
    settings: Callable[..., Settings], runware: FakeRunwareAPI
) -> None:
    async with Client(build_server(settings(), RUNWARE_ONLY)) as client:
        unknown = await client.call_tool("generate_image", {"prompt": "a fox", "model": "runware:civitai:999@1"})
        lora = await client.call_tool("generate_image", {"prompt": "a fox", "model": "runware:civitai:58390@62833"})
        not_air = await client.call_tool("generate_image", {"prompt": "a fox", "model": "runware:no_such_model"})

    # The fake serves only its catalog: an unknown AIR id reaches it and is answered as the API does.
    assert error_of(unknown)["code"] == "model_retired"
    assert "'civitai:999@1'" in error_of(unknown)["message"]
    assert [request["model"] for request in runware.requests] == ["civitai:999@1"]
    assert error_of(lora)["code"] == "invalid_request"
    assert "is a lora (Detail Tweaker)" in error_of(lora)["message"]
    assert error_of(not_air)["code"] == "model_not_found"


async def test_loras_reach_runware_by_air_id_and_files_are_refused(
    settings: Callable[..., Settings], runware: FakeRunwareAPI, tmp_path: Any
) -> None:
    lora = {"model": "civitai:180891@838667", "weight": 0.6}
    async with Client(build_server(settings(), RUNWARE_ONLY)) as client:
        result = await client.call_tool(
            "generate_image", {"prompt": "lineart of a fox", "model": "runware:flux_schnell", "loras": [lora]}
        )
        as_file = await client.call_tool(
            "generate_image",
            {"prompt": "a fox", "model": "runware:flux_schnell", "loras": [{"path": str(tmp_path / "x.safetensors")}]},
        )
    assert_image_result(result, count=1)
    (task,) = runware.tasks.values()
    assert task.task["lora"] == [lora]
    assert (result.structured_content or {})["parameters"]["loras"] == [{**lora, "path": None}]
    assert error_of(as_file)["code"] == "invalid_request"
    assert "Runware takes LoRAs by AIR id" in error_of(as_file)["message"]


async def test_an_edit_uploads_each_image_once_and_sends_seed_image_strength_and_mask(
    settings: Callable[..., Settings], runware: FakeRunwareAPI
) -> None:
    source = photo_like_png(256, 192, 7)
    arguments = {
        "prompt": "the same street at night",
        "image": data_uri(source),
        "model": "runware:juggernaut_pro",
        "count": 2,
        "strength": 0.55,
    }
    async with Client(build_server(settings(), RUNWARE_ONLY)) as client:
        edited = await client.call_tool("edit_image", arguments)
        masked = await client.call_tool(
            "edit_image", {**arguments, "count": 1, "mask": data_uri(solid_png(256, 192, 255, "L"))}
        )

    assert_image_result(edited, count=2)
    output = edited.structured_content or {}
    assert output["operation"] == "image_to_image" and output["parameters"]["width"] == 256
    first, second, third = runware.tasks.values()
    assert first.task["seedImage"] == second.task["seedImage"]  # one upload, named by its UUID in both tasks
    assert (first.task["strength"], first.task["width"], first.task["height"]) == (0.55, 256, 192)
    assert [image.data for image in first.images] == [source]
    assert "maskImage" in third.task and [image.field for image in third.images] == ["seedImage", "maskImage"]
    assert [upload.data for upload in runware.uploads][:1] == [source]
    assert len(runware.uploads) == 3  # the image for the first call, image and mask for the second
    assert (masked.structured_content or {})["operation"] == "inpaint", text_of(masked)


async def test_kontext_edits_by_instruction_with_the_image_as_its_reference(
    settings: Callable[..., Settings], runware: FakeRunwareAPI
) -> None:
    source = photo_like_png(320, 240, 8)
    async with Client(build_server(settings(), RUNWARE_ONLY)) as client:
        result = await client.call_tool(
            "edit_image",
            {"prompt": "make the car red", "image": data_uri(source), "model": "runware:flux_kontext_dev"},
        )
    assert_image_result(result, count=1)
    output = result.structured_content or {}
    assert output["operation"] == "instruction_edit", text_of(result)
    (task,) = runware.tasks.values()
    assert task.task["model"] == "runware:106@1"
    assert "seedImage" not in task.task and "strength" not in task.task
    assert [image.field for image in task.images] == ["inputs.referenceImages[0]"]
    assert [image.data for image in task.images] == [source]
    assert (task.task["width"], task.task["height"]) == (320, 240)  # multiples of 16, the input's size


async def test_an_edit_of_a_result_by_its_uri_sends_the_stored_bytes_and_links_back(
    settings: Callable[..., Settings], runware: FakeRunwareAPI
) -> None:
    async with Client(build_server(settings(), RUNWARE_ONLY)) as client:
        made = await client.call_tool("generate_image", {"prompt": "a harbour at noon", "width": 512, "height": 384})
        (parent,) = assert_image_result(made, count=1)
        edited = await client.call_tool(
            "edit_image", {"prompt": "the same harbour at night", "image": parent["uri"], "strength": 0.4}
        )
    output = edited.structured_content or {}
    assert output["operation"] == "image_to_image", text_of(edited)
    (source,) = output["inputs"]
    assert (source["image_id"], source["uri"]) == (parent["id"], parent["uri"])
    *_, task = runware.tasks.values()
    assert task.task["strength"] == 0.4
    (seed_image,) = task.images
    assert seed_image.data == Path(parent["path"]).read_bytes()  # the stored file, byte for byte
    assert (task.task["width"], task.task["height"]) == (512, 384)


async def test_inpainting_keeps_the_pixels_outside_the_mask(
    settings: Callable[..., Settings], runware: FakeRunwareAPI
) -> None:
    source = photo_like_png(256, 256, 11)
    mask = Image.new("L", (256, 256), 0)
    mask.paste(255, (64, 64, 192, 192))
    buffer = io.BytesIO()
    mask.save(buffer, "PNG")
    async with Client(build_server(settings(), RUNWARE_ONLY)) as client:
        result = await client.call_tool(
            "edit_image",
            {"prompt": "a red door", "image": data_uri(source), "mask": data_uri(buffer.getvalue()), "count": 1},
        )
        (image,) = assert_image_result(result, count=1)
        blob = (await client.read_resource(image["uri"])).contents[0]
    assert (result.structured_content or {})["operation"] == "inpaint"
    (task,) = runware.tasks.values()
    assert [received.field for received in task.images] == ["seedImage", "maskImage"]
    assert isinstance(blob, BlobResourceContents)
    out = np.asarray(Image.open(io.BytesIO(base64.b64decode(blob.blob))).convert("RGB")).astype(int)
    before = np.asarray(Image.open(io.BytesIO(source)).convert("RGB")).astype(int)
    inside = np.zeros((256, 256), dtype=bool)
    inside[64:192, 64:192] = True
    assert np.abs(out - before)[~inside].mean() < 2  # kept outside the mask
    assert np.abs(out - before)[inside].mean() > 20  # repainted inside it


async def test_kontext_pro_makes_the_listed_size_nearest_the_input(
    settings: Callable[..., Settings], runware: FakeRunwareAPI
) -> None:
    async with Client(build_server(settings(), RUNWARE_ONLY)) as client:
        result = await client.call_tool(
            "edit_image",
            {"prompt": "make it winter", "image": data_uri(photo_like_png(600, 400, 3)), "model": "flux_kontext_pro"},
        )
    (image,) = assert_image_result(result, count=1)
    (task,) = runware.tasks.values()
    assert (task.task["width"], task.task["height"]) == (1248, 832)  # 3:2, as the input
    assert "steps" not in task.task and "CFGScale" not in task.task and "negativePrompt" not in task.task
    assert (image["width"], image["height"]) == (1248, 832)
    notes = (result.structured_content or {})["adjustments"]
    assert any("mapped to 1248x832" in note for note in notes)
    assert not any("answered" in note for note in notes)  # the size it was asked for, so no surprise
