"""edit_image through a real MCP client, on scripted providers: inputs by URI, path and data URI, what the
provider receives, lineage in the result and the history, capability-aware plans, and bad inputs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from mcp.client import Client

from imagegen_mcp.config import Settings
from imagegen_mcp.providers.base import ImageInputs
from imagegen_mcp.server.app import build_server
from imagegen_mcp.testing import FunctionModelConfig, FunctionProvider, photo_like_png
from tests.e2e import assert_image_result, error_of
from tests.images import bomb_png, data_uri, solid_png

pytestmark = pytest.mark.anyio

EDITOR = FunctionModelConfig(key="editor", inputs=ImageInputs(image_to_image=True, inpaint=True), default_strength=0.6)
PAINTER = FunctionModelConfig(key="painter")
INSTRUCTED = FunctionModelConfig(key="instructed", inputs=ImageInputs(instruction_edit=True, max_reference_images=2))


def providers() -> tuple[FunctionProvider, FunctionProvider]:
    return (
        FunctionProvider(name="local", models=[PAINTER, EDITOR], priority=1),
        FunctionProvider(name="cloud", models=[INSTRUCTED], priority=2),
    )


async def test_an_edit_of_a_result_by_its_uri_reaches_the_provider_with_the_stored_bytes(
    make_settings: Callable[..., Settings],
) -> None:
    local, cloud = providers()
    async with Client(build_server(make_settings(), [local, cloud])) as client:
        made = await client.call_tool("generate_image", {"prompt": "a fox", "width": 192, "height": 128})
        (image,) = assert_image_result(made, count=1)
        edited = await client.call_tool(
            "edit_image", {"prompt": "make it dusk", "image": image["uri"], "strength": 0.4}
        )
        (child,) = assert_image_result(edited, count=1)
        found = await client.call_tool("search_images", {"query": "dusk"})
    request = local.calls[-1]
    assert request.edit is not None and request.edit.operation == "image_to_image"
    assert request.edit.image.data == Path(image["path"]).read_bytes()
    assert request.edit.strength == 0.4
    assert (request.width, request.height) == (192, 128)  # an edit keeps its input's size
    structured = edited.structured_content or {}
    assert structured["model"] == "local:editor"  # the default painter takes no image; the provider's editor can
    assert structured["operation"] == "image_to_image"
    (parent,) = structured["inputs"]
    assert (parent["argument"], parent["image_id"], parent["uri"]) == ("image", image["id"], image["uri"])
    (listed,) = (found.structured_content or {})["images"]
    assert listed["id"] == child["id"]


async def test_masks_and_references_and_strength_defaults(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    local, cloud = providers()
    source = photo_like_png(128, 128, 1)
    mask = solid_png(64, 64, 255, mode="L")  # half the size, same shape: scaled to the image
    async with Client(build_server(make_settings(), [local, cloud])) as client:
        masked = await client.call_tool(
            "edit_image", {"prompt": "repaint", "image": data_uri(source), "mask": data_uri(mask)}
        )
        referenced = await client.call_tool(
            "edit_image",
            {
                "prompt": "in this style",
                "image": data_uri(source),
                "reference_images": [data_uri(solid_png(32, 32))],
                "strength": 0.3,
            },
        )
    assert_image_result(masked, count=1) and assert_image_result(referenced, count=1)
    inpainting = local.calls[-1]
    assert inpainting.edit is not None and inpainting.edit.operation == "inpaint"
    assert inpainting.edit.mask is not None and (inpainting.edit.mask.width, inpainting.edit.mask.height) == (128, 128)
    assert inpainting.edit.strength == 0.6  # the model's default
    instructed = cloud.calls[-1]
    assert instructed.edit is not None and instructed.edit.operation == "instruction_edit"
    assert [reference.argument for reference in instructed.edit.references] == ["reference_images[0]"]
    assert instructed.edit.strength is None
    structured = referenced.structured_content or {}
    assert structured["model"] == "cloud:instructed"
    assert any("strength ignored" in note for note in structured["adjustments"])
    # The fallback past local (which takes no references) is in the trace.
    assert structured["attempts"][0]["outcome"] == "skipped"
    assert structured["attempts"][0]["reason"] == "no local model can edit an image, take 1 reference image(s)"


async def test_an_explicit_model_without_the_capability_is_refused_with_the_models_that_have_it(
    make_settings: Callable[..., Settings],
) -> None:
    local, cloud = providers()
    async with Client(build_server(make_settings(), [local, cloud])) as client:
        refused = await client.call_tool(
            "edit_image",
            {
                "prompt": "x",
                "image": data_uri(solid_png(64, 64)),
                "mask": data_uri(solid_png(64, 64, 255, "L")),
                "model": "cloud:instructed",
            },
        )
    error = error_of(refused)
    assert error["code"] == "invalid_request"
    assert "cloud:instructed cannot edit an image, inpaint with a mask" in error["message"]
    assert error["details"]["capable_models"] == ["local:editor"]
    assert local.calls == [] and cloud.calls == []


@pytest.mark.parametrize(
    ("argument", "value", "mentions"),
    [
        ("image", "/etc/passwd", "allowed"),
        ("image", "{root}/../../etc/hosts", "allowed"),
        ("image", "relative/path.png", "image"),
        ("image", "https://example.com/cat.png", "IMAGEGEN_ALLOW_URL_INPUTS"),
        ("image", "imagegen://images/20261201T120000Z-0a1b2c3d", "20261201T120000Z-0a1b2c3d"),
        ("image", "data:image/png;base64,bm90IGFuIGltYWdl", "image"),
        ("image", "bomb", "pixels"),
        ("mask", "colour", "mask"),
    ],
)
async def test_bad_inputs_are_structured_errors_and_the_server_keeps_serving(
    make_settings: Callable[..., Settings], tmp_path: Path, argument: str, value: str, mentions: str
) -> None:
    settings = make_settings()
    local, cloud = providers()
    arguments: dict[str, Any] = {"prompt": "x", "image": data_uri(photo_like_png(64, 64, 2))}
    if value == "bomb":
        value = data_uri(bomb_png(60000, 60000))
    elif value == "colour":
        value = data_uri(photo_like_png(64, 64, 3))
    arguments[argument] = value.format(root=settings.output_dir)
    async with Client(build_server(settings, [local, cloud])) as client:
        refused = await client.call_tool("edit_image", arguments)
        alive = await client.call_tool("generate_image", {"prompt": "still here", "width": 64, "height": 64})
    error = error_of(refused)
    assert error["code"] == "invalid_request" and mentions in error["message"] + " ".join(error["remediation"])
    for given in arguments.values():
        if given.startswith("data:"):
            assert given[-40:] not in error["message"]  # a payload is never echoed back
    assert_image_result(alive, count=1)
    assert local.calls and all(call.edit is None for call in local.calls)
