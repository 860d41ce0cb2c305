from __future__ import annotations

from collections.abc import Callable

import pytest
from pydantic import ValidationError

from imagegen_mcp.catalog import Catalog, discover_provider_types
from imagegen_mcp.config import Settings
from imagegen_mcp.errors import CatalogError
from imagegen_mcp.providers.base import ProviderInfo, registry
from imagegen_mcp.providers.flux_local import FLUX_LOCAL_MODELS, FluxLocalProvider
from imagegen_mcp.providers.gemini import GEMINI_MODELS, GeminiProvider
from imagegen_mcp.providers.runware import RUNWARE_MODELS, RunwareModelConfig, RunwareProvider
from tests.fakes.palette import PaletteModelConfig, PaletteProvider


def test_builtin_providers_come_from_entry_points() -> None:
    assert {t.__name__ for t in discover_provider_types()} >= {"RunwareProvider", "FluxLocalProvider", "GeminiProvider"}


def test_runware_seed_values() -> None:
    assert RunwareProvider.info.priority == 1
    assert RunwareProvider.info.default_model == "juggernaut_pro"
    expected = {
        "juggernaut_pro": ("rundiffusion:130@100", 20, 7.5),
        "juggernaut_lightning": ("rundiffusion:110@101", 4, 1.0),
        "flux_schnell": ("runware:100@1", 4, 3.5),
        "hidream_fast": ("runware:97@3", 8, 7.0),
    }
    for key, (air, steps, cfg) in expected.items():
        model = RUNWARE_MODELS[key]
        assert isinstance(model, RunwareModelConfig)
        assert (model.air, model.default_steps, model.default_guidance) == (air, steps, cfg)
        assert model.default_negative_prompt == "worst quality, low quality, blurry"
        assert model.max_resolution == 1024


def test_flux_local_seed_values() -> None:
    assert FluxLocalProvider.info.priority == 2
    assert FluxLocalProvider.info.default_model == "lightning_4step"
    for key, filename, steps in [
        ("lightning_4step", "sdxl_lightning_4step.safetensors", 4),
        ("lightning_8step", "sdxl_lightning_8step.safetensors", 8),
    ]:
        model = FLUX_LOCAL_MODELS[key].model_dump()
        assert model["default_steps"] == steps and model["default_guidance"] == 0.0
        assert model["pipeline"] == "sdxl"
        assert "ByteDance/SDXL-Lightning" in str(model) and filename in str(model)
        assert model["scheduler"]["config"] == {"timestep_spacing": "trailing", "prediction_type": "epsilon"}
    juggernaut = FLUX_LOCAL_MODELS["juggernaut_xi"].model_dump()
    assert "RunDiffusion/Juggernaut-XI-v11" in str(juggernaut)
    assert "Juggernaut-XI-byRunDiffusion.safetensors" in str(juggernaut)
    assert (juggernaut["default_steps"], juggernaut["default_guidance"]) == (30, 4.5)
    assert juggernaut["default_negative_prompt"] == "fake eyes, bad hands, deformed eyes"
    assert juggernaut["scheduler"]["config"] == {"algorithm_type": "sde-dpmsolver++", "solver_type": "midpoint"}


def test_gemini_catalog() -> None:
    assert GeminiProvider.info.priority == 3
    default = GEMINI_MODELS[GeminiProvider.info.default_model]
    assert "2.5 Flash Image" in default.display_name
    assert any("Pro" in model.display_name for model in GEMINI_MODELS.values())


def test_model_configs_require_their_fields() -> None:
    with pytest.raises(ValidationError, match="air"):
        RunwareModelConfig(key="x", display_name="X", default_steps=4, default_guidance=1.0)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="extra"):
        RunwareModelConfig(key="x", display_name="X", air="a:1@1", default_steps=4, default_guidance=1.0, colour=1)  # type: ignore[call-arg]


def test_duplicate_model_key_across_providers_is_rejected(make_settings: Callable[..., Settings]) -> None:
    class Clash(PaletteProvider):
        info = ProviderInfo("clash", "Clash", "defines runware's key", "juggernaut_pro", 9)
        models = registry(
            PaletteModelConfig(
                key="juggernaut_pro",
                display_name="Clash",
                default_steps=1,
                default_guidance=0.0,
                max_resolution=1024,
                supports_negative_prompt=False,
                channel=0,
            )
        )

    with pytest.raises(CatalogError, match="'juggernaut_pro' is defined by both"):
        Catalog.load(make_settings(), [RunwareProvider, Clash])


def test_duplicate_provider_name_is_rejected(make_settings: Callable[..., Settings]) -> None:
    with pytest.raises(CatalogError, match="two providers are named 'palette'"):
        Catalog.load(make_settings(), [PaletteProvider, PaletteProvider])


def test_duplicate_key_within_a_provider_is_rejected() -> None:
    model = RUNWARE_MODELS["flux_schnell"]
    with pytest.raises(ValueError, match="flux_schnell"):
        registry(model, model)
