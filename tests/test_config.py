from __future__ import annotations

from pathlib import Path

import pytest

from imagegen_mcp.config import Settings, default_output_dir
from imagegen_mcp.errors import ConfigError


def test_defaults() -> None:
    settings = Settings.load({})
    assert settings.fallback == "auto"
    assert (settings.preview_max_px, settings.preview_format) == (384, "webp")
    assert settings.default_provider is None
    assert settings.output_dir == default_output_dir().resolve()
    assert settings.output_dir.is_absolute()
    assert Path.cwd() not in settings.output_dir.parents


def test_values_are_parsed() -> None:
    settings = Settings.load(
        {
            "IMAGEGEN_PROVIDER_ORDER": " gemini, flux_local ,",
            "IMAGEGEN_FALLBACK": "STRICT",
            "IMAGEGEN_PREVIEW_MAX_PX": "256",
            "IMAGEGEN_TIMEOUT_S": "30",
            "IMAGEGEN_OUTPUT_DIR": "~/pictures",
        }
    )
    assert settings.provider_order == ("gemini", "flux_local")
    assert settings.fallback == "strict"
    assert settings.preview_max_px == 256
    assert settings.request_timeout_s == 30
    assert settings.output_dir == Path("~/pictures").expanduser()


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("IMAGEGEN_FALLBACK", "sometimes", "'auto' or 'strict'"),
        ("IMAGEGEN_PREVIEW_MAX_PX", "big", "valid integer"),
        ("IMAGEGEN_PREVIEW_MAX_PX", "10", "greater than or equal to 64"),
        ("IMAGEGEN_TIMEOUT_S", "-1", "greater than 0"),
        ("IMAGEGEN_PREVIEW_FORMAT", "gif", "'webp' or 'jpeg'"),
        ("RUNWARE_URL", "http://x", "wss?://"),
    ],
)
def test_invalid_values_name_the_variable(variable: str, value: str, expected: str) -> None:
    from imagegen_mcp.providers.runware import RunwareSettings

    with pytest.raises(ConfigError) as caught:
        settings = Settings.load({variable: value})
        settings.provider_settings(RunwareSettings)
    assert variable in str(caught.value)
    assert expected in str(caught.value)


def test_toml_file_under_the_environment(tmp_path: Path) -> None:
    config = tmp_path / "imagegen.toml"
    config.write_text('IMAGEGEN_FALLBACK = "strict"\nIMAGEGEN_PREVIEW_MAX_PX = 300\nRUNWARE_API_KEY = "from-file"\n')
    settings = Settings.load({"IMAGEGEN_CONFIG": str(config), "IMAGEGEN_PREVIEW_MAX_PX": "400"})
    assert settings.fallback == "strict"
    assert settings.preview_max_px == 400
    assert "from-file" in settings.secrets()


def test_broken_toml_file_is_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("IMAGEGEN_FALLBACK = \n")
    expected = r"bad\.toml: not valid TOML: .*line 1.*\(in the top level, field IMAGEGEN_FALLBACK"
    with pytest.raises(ConfigError, match=expected):
        Settings.load({"IMAGEGEN_CONFIG": str(config)})


def test_secrets_are_collected_by_name() -> None:
    settings = Settings.load({"RUNWARE_API_KEY": "rw-123456", "IMAGEGEN_AUTH_TOKEN": "tok-abcdef", "HOME": "/root"})
    assert set(settings.secrets()) == {"rw-123456", "tok-abcdef"}
    assert "tok-abcdef" not in repr(settings)
