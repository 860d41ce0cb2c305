from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest
from PIL import Image

from imagegen_mcp.errors import ErrorCode, ProviderError
from imagegen_mcp.providers.base import decode_base64_images
from imagegen_mcp.storage import ImageStore, read_png_text
from tests.fakes.palette import solid_png


def test_png_is_stored_with_provenance_and_without_reencoding(tmp_path: Path) -> None:
    store = ImageStore(tmp_path, preview_max_px=128, preview_format="webp")
    original = solid_png(640, 320, seed=7, channel=0)
    stored = store.save(original, {"prompt": "a red square", "seed": 7})
    data = stored.path.read_bytes()
    provenance = json.loads(read_png_text(data) or "{}")
    assert provenance == {"id": stored.id, "prompt": "a red square", "seed": 7}
    # The image data chunks are the provider's, byte for byte.
    assert original[33:] in data
    assert (stored.width, stored.height, stored.mime_type) == (640, 320, "image/png")
    assert stored.size_bytes == len(data)
    assert stored.uri == f"imagegen://images/{stored.id}"
    assert store.read(stored.id) == data
    assert Image.open(io.BytesIO(data)).getpixel((5, 5)) == (7, 40, 40)


@pytest.mark.parametrize(
    ("fmt", "mime", "pil_format"), [("webp", "image/webp", "WEBP"), ("jpeg", "image/jpeg", "JPEG")]
)
def test_preview_is_small(tmp_path: Path, fmt: str, mime: str, pil_format: str) -> None:
    store = ImageStore(tmp_path, preview_max_px=256, preview_format=fmt)  # type: ignore[arg-type]
    stored = store.save(solid_png(1024, 512, seed=1, channel=1), {})
    preview = Image.open(io.BytesIO(stored.preview))
    assert preview.format == pil_format
    assert preview.size == (256, 128) == (stored.preview_width, stored.preview_height)
    assert stored.preview_mime_type == mime


def test_non_png_output_is_stored_as_png(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (100, 60), (1, 2, 3)).save(buffer, format="JPEG")
    stored = ImageStore(tmp_path, 512, "webp").save(buffer.getvalue(), {"k": "v"})
    assert stored.path.read_bytes().startswith(b"\x89PNG")
    assert Image.open(stored.path).size == (100, 60)


def test_writes_leave_no_temporary_files(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "out", 512, "webp")
    for seed in range(3):
        store.save(solid_png(64, 64, seed, 0), {})
    assert sorted(p.suffix for p in (tmp_path / "out").iterdir()) == [".png"] * 3


@pytest.mark.parametrize("bad_id", ["../etc/passwd", "20260101T000000Z-zzzzzzzz", "x"])
def test_unsafe_ids_are_not_found(tmp_path: Path, bad_id: str) -> None:
    with pytest.raises(FileNotFoundError):
        ImageStore(tmp_path, 512, "webp").read(bad_id)


@pytest.mark.anyio
async def test_base64_images_are_decoded_off_the_event_loop_and_bad_text_is_the_vendors_fault() -> None:
    original = solid_png(80, 40, seed=3, channel=2)
    (image,) = await decode_base64_images("vendor", [(base64.b64encode(original).decode("ascii"), "image/png", 7)])
    assert (image.data, image.mime_type, image.seed) == (original, "image/png", 7)
    with pytest.raises(ProviderError) as caught:
        await decode_base64_images("vendor", [("bm90IGFuIGltYWdl", "image/png", 1), ("%%%not base64", "image/png", 2)])
    assert caught.value.code == ErrorCode.PROVIDER_ERROR and caught.value.retryable
    assert caught.value.message == "vendor sent image 2 as data that is not valid base64."
