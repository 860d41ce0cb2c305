"""The service without a protocol: plans, fallback rules, adjustments and provenance."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from imagegen_mcp.catalog import Catalog
from imagegen_mcp.config import Settings
from imagegen_mcp.errors import ConfigError, ErrorCode, ImageGenError
from imagegen_mcp.requests import ImageRequest
from imagegen_mcp.service import ImageService
from imagegen_mcp.storage import read_png_text
from tests.fakes.palette import BackupPaletteProvider, PaletteProvider

pytestmark = pytest.mark.anyio


def service_for(settings: Settings) -> ImageService:
    return ImageService(settings, Catalog.load(settings, [PaletteProvider, BackupPaletteProvider]))


async def test_generates_with_the_first_provider(make_settings: Callable[..., Settings]) -> None:
    service = service_for(make_settings())
    result = await service.generate(ImageRequest(prompt="red", seed=42, count=2, width=96, height=64))
    assert result.model_id == "palette:solid_red"
    assert [saved.seed for saved in result.images] == [42, 43]
    assert [(s.stored.width, s.stored.height) for s in result.images] == [(128, 64), (128, 64)]
    assert "size 96x64 rounded to 128x64" in result.adjustments[0]
    assert not result.fell_back
    provenance = json.loads(read_png_text(result.images[0].stored.path.read_bytes()) or "")
    assert provenance["prompt"] == "red" and provenance["seed"] == 42 and provenance["model"] == "palette:solid_red"
    assert service.recent[0] is result


async def test_seed_is_chosen_and_reported_when_absent(make_settings: Callable[..., Settings]) -> None:
    result = await service_for(make_settings()).generate(ImageRequest(prompt="red"))
    assert isinstance(result.parameters.seed, int)
    assert result.images[0].seed == result.parameters.seed


@pytest.mark.parametrize("failure", ["auth", "rate_limited", "server_error"])
async def test_falls_back_for_provider_failures(make_settings: Callable[..., Settings], failure: str) -> None:
    service = service_for(make_settings(PALETTE_FAIL=failure))
    result = await service.generate(ImageRequest(prompt="x", steps=30))
    assert result.model_id == "backup:solid_blue"
    assert result.fell_back
    assert [a.outcome for a in result.attempts] == ["failed", "succeeded"]
    assert result.attempts[0].provider == "palette"
    # Steps were asked of the first model; the fallback model runs with its own tuned value.
    assert result.parameters.steps == 4
    assert any("steps 30 -> 4" in note for note in result.adjustments)


@pytest.mark.parametrize(
    ("failure", "code"), [("blocked", ErrorCode.CONTENT_BLOCKED), ("crash", ErrorCode.INTERNAL_ERROR)]
)
async def test_never_falls_back_for_blocks_or_bugs(
    make_settings: Callable[..., Settings], failure: str, code: ErrorCode
) -> None:
    service = service_for(make_settings(PALETTE_FAIL=failure))
    with pytest.raises(ImageGenError) as caught:
        await service.generate(ImageRequest(prompt="x"))
    assert caught.value.code == code
    assert [a.provider for a in caught.value.attempts] == ["palette"]
    backup = service.catalog.providers["backup"]
    assert isinstance(backup, BackupPaletteProvider) and backup.calls == []


async def test_strict_mode_does_not_fall_back(make_settings: Callable[..., Settings]) -> None:
    service = service_for(make_settings(PALETTE_FAIL="server_error"))
    with pytest.raises(ImageGenError) as caught:
        await service.generate(ImageRequest(prompt="x", fallback="strict"))
    assert caught.value.code == ErrorCode.PROVIDER_ERROR
    assert caught.value.retryable
    assert len(caught.value.attempts) == 1


async def test_unavailable_default_is_skipped_with_its_reason(make_settings: Callable[..., Settings]) -> None:
    result = await service_for(make_settings(PALETTE_AVAILABLE="false")).generate(ImageRequest(prompt="x"))
    assert result.model_id == "backup:solid_blue"
    assert result.attempts[0].outcome == "skipped"
    assert result.attempts[0].reason == "PALETTE_AVAILABLE is false"


async def test_unavailable_in_strict_mode_is_provider_unavailable(make_settings: Callable[..., Settings]) -> None:
    service = service_for(make_settings(PALETTE_AVAILABLE="false", IMAGEGEN_FALLBACK="strict"))
    with pytest.raises(ImageGenError) as caught:
        await service.generate(ImageRequest(prompt="x"))
    assert caught.value.code == ErrorCode.PROVIDER_UNAVAILABLE
    assert caught.value.remediation == ["Set PALETTE_AVAILABLE=true"]


async def test_oversized_request_is_invalid_for_the_chosen_model(make_settings: Callable[..., Settings]) -> None:
    service = service_for(make_settings())
    with pytest.raises(ImageGenError) as caught:
        await service.generate(ImageRequest(prompt="x", model="solid_green", width=1024, height=1024))
    assert caught.value.code == ErrorCode.INVALID_REQUEST
    assert "at most 512" in caught.value.remediation[0]


async def test_fallback_scales_an_oversized_request(make_settings: Callable[..., Settings]) -> None:
    service = service_for(make_settings(PALETTE_FAIL="server_error"))
    result = await service.generate(ImageRequest(prompt="x", width=2048, height=1024))
    assert (result.parameters.width, result.parameters.height) == (1024, 512)
    assert any("scaled to fit backup:solid_blue" in note for note in result.adjustments)


async def test_aspect_ratio_and_negative_prompt(make_settings: Callable[..., Settings]) -> None:
    service = service_for(make_settings())
    result = await service.generate(ImageRequest(prompt="x", model="solid_green", aspect_ratio="16:9"))
    assert (result.parameters.width, result.parameters.height) == (512, 288)
    assert result.parameters.negative_prompt == "noise"
    result = await service.generate(ImageRequest(prompt="x", negative_prompt="blur"))
    assert result.parameters.negative_prompt is None
    assert "negative_prompt ignored" in result.adjustments[0]


async def test_settings_naming_unknown_providers_fail_at_start(make_settings: Callable[..., Settings]) -> None:
    for variable, value in [
        ("IMAGEGEN_DEFAULT_PROVIDER", "openai"),
        ("IMAGEGEN_PROVIDER_ORDER", "palette,openai"),
        ("IMAGEGEN_DEFAULT_MODEL", "dall-e"),
    ]:
        with pytest.raises(ConfigError, match=variable):
            service_for(make_settings(**{variable: value}))


async def test_aclose_closes_every_provider(make_settings: Callable[..., Settings]) -> None:
    service = service_for(make_settings())
    await service.aclose()
    assert all(getattr(p, "closed", False) for p in service.catalog.providers.values())


async def test_progress_only_ever_increases_and_stays_below_done() -> None:
    from imagegen_mcp.providers.base import Progress

    seen: list[tuple[float, float | None, str | None]] = []

    async def sink(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    progress = Progress(sink)
    for message, fraction in [
        ("queued", None),
        ("step", 0.5),
        ("step", 1.0),
        ("late", 0.2),
        ("save", 0.99),
        ("x", None),
    ]:
        await progress.update(message, fraction)
    values = [value for value, _, _ in seen]
    assert values == sorted(values) and len(set(values)) == len(values)
    assert values[-1] < 100 and all(total == 100 for _, total, _ in seen)
    await Progress().update("no client asked for progress", 0.5)  # no sink: nothing to do, no error
