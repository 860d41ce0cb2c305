"""The service without a protocol: plans, fallback rules, adjustments and provenance, on scripted providers."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable

import pytest

from imagegen_mcp.catalog import Catalog
from imagegen_mcp.config import Settings
from imagegen_mcp.errors import (
    AuthenticationError,
    ConfigError,
    ContentBlockedError,
    ErrorCode,
    ImageGenError,
    ProviderError,
    RateLimitedError,
)
from imagegen_mcp.providers.base import MAX_SEED, GenerationRequest, Progress, ProviderResult, Requirement
from imagegen_mcp.requests import ImageRequest
from imagegen_mcp.service import ImageService
from imagegen_mcp.storage import read_png_text
from imagegen_mcp.testing import (
    FunctionModelConfig,
    FunctionProvider,
    GenerateFunction,
    fails_with,
    photo_like_png,
    unmet,
)

pytestmark = pytest.mark.anyio

RED = FunctionModelConfig(key="red", default_steps=2, default_guidance=1.0, supports_negative_prompt=False)
GREEN = FunctionModelConfig(
    key="green",
    default_steps=6,
    default_guidance=3.0,
    max_resolution=512,
    default_width=512,
    default_height=512,
    size_multiple=8,
    default_negative_prompt="noise",
)
BLUE = FunctionModelConfig(
    key="blue", default_steps=4, default_guidance=2.0, max_resolution=1024, supports_negative_prompt=False
)


def service_with(settings: Settings, first: FunctionProvider, backup: FunctionProvider | None = None) -> ImageService:
    backup = backup or FunctionProvider(name="backup", models=[BLUE], priority=6)
    return ImageService(settings, Catalog([first, backup]))


def primary(fn: GenerateFunction | None = None, *requirements: Requirement) -> FunctionProvider:
    return FunctionProvider(fn, name="primary", models=[RED, GREEN], priority=5, requirements=requirements)


async def test_generates_with_the_first_provider(make_settings: Callable[..., Settings]) -> None:
    service = service_with(make_settings(), primary())
    result = await service.generate(ImageRequest(prompt="red", seed=42, count=2, width=96, height=64))
    assert result.model_id == "primary:red"
    assert [saved.seed for saved in result.images] == [42, 43]
    assert [(s.stored.width, s.stored.height) for s in result.images] == [(128, 64), (128, 64)]
    assert "size 96x64 rounded to 128x64" in result.adjustments[0]
    assert not result.fell_back
    provenance = json.loads(read_png_text(result.images[0].stored.path.read_bytes()) or "")
    assert provenance["prompt"] == "red" and provenance["seed"] == 42 and provenance["model"] == "primary:red"


async def test_seeds_wrap_at_the_maximum_so_each_can_be_reused(make_settings: Callable[..., Settings]) -> None:
    service = service_with(make_settings(), primary())
    result = await service.generate(ImageRequest(prompt="x", seed=MAX_SEED, count=2, width=64, height=64))
    seeds = [saved.seed for saved in result.images]
    assert seeds == [MAX_SEED, 0]
    for seed in seeds:  # every reported seed is accepted back, and reproduces its image alone
        again = await service.generate(ImageRequest(prompt="x", seed=seed, width=64, height=64))
        assert again.images[0].stored.path.read_bytes() != b""
        assert again.images[0].seed == seed


async def test_seed_is_chosen_and_reported_when_absent(make_settings: Callable[..., Settings]) -> None:
    result = await service_with(make_settings(), primary()).generate(ImageRequest(prompt="red", width=64, height=64))
    assert isinstance(result.parameters.seed, int)
    assert result.images[0].seed == result.parameters.seed


@pytest.mark.parametrize(
    "error",
    [
        AuthenticationError("key rejected"),
        RateLimitedError("too many requests", retry_after_s=3),
        ProviderError("upstream answered 503", retryable=True),
    ],
)
async def test_falls_back_for_provider_failures(make_settings: Callable[..., Settings], error: ImageGenError) -> None:
    service = service_with(make_settings(), primary(fails_with(error)))
    result = await service.generate(ImageRequest(prompt="x", steps=30, width=64, height=64))
    assert result.model_id == "backup:blue"
    assert result.fell_back
    assert [(a.provider, a.outcome, a.code) for a in result.attempts] == [
        ("primary", "failed", error.code),
        ("backup", "succeeded", None),
    ]
    # Steps were asked of the first model; the fallback model runs with its own tuned value.
    assert result.parameters.steps == 4
    assert any("steps 30 -> 4" in note for note in result.adjustments)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ContentBlockedError("prompt blocked by the safety filter"), ErrorCode.CONTENT_BLOCKED),
        (ProviderError("no credits left", retryable=False), ErrorCode.PROVIDER_ERROR),
    ],
)
async def test_never_falls_back_for_blocks_or_account_problems(
    make_settings: Callable[..., Settings], error: ImageGenError, code: ErrorCode
) -> None:
    backup = FunctionProvider(name="backup", models=[BLUE], priority=6)
    service = service_with(make_settings(), primary(fails_with(error)), backup)
    with pytest.raises(ImageGenError) as caught:
        await service.generate(ImageRequest(prompt="x"))
    assert caught.value.code == code
    assert [a.provider for a in caught.value.attempts] == ["primary"]
    assert caught.value.provider == "primary" and caught.value.model == "primary:red"
    assert backup.calls == []


async def test_a_crash_is_an_internal_error_and_never_falls_back(make_settings: Callable[..., Settings]) -> None:
    async def crash(request: GenerationRequest, model: FunctionModelConfig, progress: Progress) -> ProviderResult:
        raise RuntimeError("bug")

    backup = FunctionProvider(name="backup", models=[BLUE], priority=6)
    service = service_with(make_settings(), primary(crash), backup)
    with pytest.raises(ImageGenError) as caught:
        await service.generate(ImageRequest(prompt="x"))
    assert caught.value.code == ErrorCode.INTERNAL_ERROR
    assert backup.calls == []


async def test_a_shared_error_instance_is_never_changed(make_settings: Callable[..., Settings]) -> None:
    shared = ProviderError("upstream answered 503", retryable=True, remediation=["Try again later"])
    service = service_with(
        make_settings(), primary(fails_with(shared)), FunctionProvider(fails_with(shared), name="backup", models=[BLUE])
    )
    messages = []
    for _ in range(3):
        with pytest.raises(ImageGenError) as caught:
            await service.generate(ImageRequest(prompt="x"))
        messages.append(caught.value.message)
        assert [a.outcome for a in caught.value.attempts] == ["failed", "failed"]
        assert caught.value.remediation == ["Try again later"]
    assert messages == ["upstream answered 503 (tried primary:red, backup:blue)"] * 3
    assert shared.message == "upstream answered 503" and shared.attempts == () and shared.provider is None


async def test_strict_mode_does_not_fall_back(make_settings: Callable[..., Settings]) -> None:
    service = service_with(make_settings(), primary(fails_with(ProviderError("503", retryable=True))))
    with pytest.raises(ImageGenError) as caught:
        await service.generate(ImageRequest(prompt="x", fallback="strict"))
    assert caught.value.code == ErrorCode.PROVIDER_ERROR
    assert caught.value.retryable
    assert len(caught.value.attempts) == 1


async def test_unavailable_default_is_skipped_with_its_reason(make_settings: Callable[..., Settings]) -> None:
    service = service_with(make_settings(), primary(None, unmet("PRIMARY_KEY is not set", "Set PRIMARY_KEY")))
    result = await service.generate(ImageRequest(prompt="x", width=64, height=64))
    assert result.model_id == "backup:blue"
    assert result.attempts[0].outcome == "skipped"
    assert result.attempts[0].reason == "PRIMARY_KEY is not set"


async def test_unavailable_in_strict_mode_is_provider_unavailable(make_settings: Callable[..., Settings]) -> None:
    service = service_with(
        make_settings(IMAGEGEN_FALLBACK="strict"),
        primary(None, unmet("PRIMARY_KEY is not set", "Set PRIMARY_KEY", "Restart the server")),
    )
    with pytest.raises(ImageGenError) as caught:
        await service.generate(ImageRequest(prompt="x"))
    assert caught.value.code == ErrorCode.PROVIDER_UNAVAILABLE
    assert caught.value.remediation == ["Set PRIMARY_KEY", "Restart the server"]


async def test_nothing_available_lists_every_provider_considered(make_settings: Callable[..., Settings]) -> None:
    service = service_with(
        make_settings(),
        primary(None, unmet("PRIMARY_KEY is not set", "Set PRIMARY_KEY")),
        FunctionProvider(name="backup", models=[BLUE], requirements=(unmet("no GPU", "Use a GPU"),)),
    )
    with pytest.raises(ImageGenError) as caught:
        await service.generate(ImageRequest(prompt="x"))
    error = caught.value
    assert error.code == ErrorCode.NO_PROVIDER_AVAILABLE
    assert [(a.provider, a.outcome, a.reason) for a in error.attempts] == [
        ("primary", "skipped", "PRIMARY_KEY is not set"),
        ("backup", "skipped", "no GPU"),
    ]
    assert error.remediation == ["Set PRIMARY_KEY", "Use a GPU"]
    assert "primary:red: PRIMARY_KEY is not set" in error.message and "backup:blue: no GPU" in error.message


class ModelNeeds(FunctionProvider):
    """A provider one of whose models cannot run (its weights are missing, say)."""

    def model_requirements(self, model: FunctionModelConfig) -> list[Requirement]:
        if model.key == "green":
            return [unmet("green's weights are missing", "Download green")]
        return []


async def test_an_unavailable_model_gets_its_own_reason_and_steps(make_settings: Callable[..., Settings]) -> None:
    provider = ModelNeeds(name="primary", models=[RED, GREEN])
    service = service_with(make_settings(IMAGEGEN_FALLBACK="strict"), provider)
    with pytest.raises(ImageGenError) as caught:
        await service.generate(ImageRequest(prompt="x", model="primary:green"))
    assert caught.value.code == ErrorCode.PROVIDER_UNAVAILABLE
    assert caught.value.remediation == ["Download green"]
    assert "green's weights are missing" in caught.value.message
    result = await service.generate(ImageRequest(prompt="x", model="primary:red", width=64, height=64))
    assert result.model_id == "primary:red"


async def test_oversized_request_is_invalid_for_the_chosen_model(make_settings: Callable[..., Settings]) -> None:
    service = service_with(make_settings(), primary())
    with pytest.raises(ImageGenError) as caught:
        await service.generate(ImageRequest(prompt="x", model="green", width=1024, height=1024))
    assert caught.value.code == ErrorCode.INVALID_REQUEST
    assert "at most 512" in caught.value.remediation[0]


async def test_fallback_scales_an_oversized_request(make_settings: Callable[..., Settings]) -> None:
    service = service_with(make_settings(), primary(fails_with(ProviderError("503", retryable=True))))
    result = await service.generate(ImageRequest(prompt="x", width=2048, height=1024))
    assert (result.parameters.width, result.parameters.height) == (1024, 512)
    assert any("scaled to fit backup:blue" in note for note in result.adjustments)


async def test_aspect_ratio_and_negative_prompt(make_settings: Callable[..., Settings]) -> None:
    service = service_with(make_settings(), primary())
    result = await service.generate(ImageRequest(prompt="x", model="green", aspect_ratio="16:9"))
    assert (result.parameters.width, result.parameters.height) == (512, 288)
    assert result.parameters.negative_prompt == "noise"
    result = await service.generate(ImageRequest(prompt="x", negative_prompt="blur", width=64, height=64))
    assert result.parameters.negative_prompt is None
    assert "negative_prompt ignored" in result.adjustments[0]


async def test_settings_naming_unknown_providers_fail_at_start(make_settings: Callable[..., Settings]) -> None:
    for variable, value in [
        ("IMAGEGEN_DEFAULT_PROVIDER", "openai"),
        ("IMAGEGEN_PROVIDER_ORDER", "primary,openai"),
        ("IMAGEGEN_DEFAULT_MODEL", "dall-e"),
    ]:
        with pytest.raises(ConfigError, match=variable):
            service_with(make_settings(**{variable: value}), primary())


async def test_aclose_closes_every_provider_and_the_store(make_settings: Callable[..., Settings]) -> None:
    service = service_with(make_settings(), primary())
    before = set(threading.enumerate())
    service.store.save(photo_like_png(8, 8, 1), {})
    writers = [thread for thread in set(threading.enumerate()) - before if thread.name.startswith("imagegen-write")]
    assert writers
    await service.aclose()
    providers = list(service.catalog.providers.values())
    assert all(isinstance(p, FunctionProvider) and p.closed for p in providers)
    assert not any(thread.is_alive() for thread in writers)
    # A later session uses the same service and store again.
    assert service.store.save(photo_like_png(8, 8, 2), {}).path.is_file()


async def test_progress_only_ever_increases_and_stays_below_done() -> None:
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
