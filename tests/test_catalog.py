from __future__ import annotations

from collections.abc import Callable

import pytest
from pydantic import ValidationError

from imagegen_mcp.catalog import Catalog, discover_provider_types
from imagegen_mcp.config import Settings
from imagegen_mcp.errors import CatalogError, ConfigError, ErrorCode, ImageGenError
from imagegen_mcp.providers.base import registry
from imagegen_mcp.providers.flux_local import FluxLocalProvider
from imagegen_mcp.providers.flux_local.config import FLUX_LOCAL_MODELS
from imagegen_mcp.providers.gemini import GEMINI_MODELS, GeminiProvider
from imagegen_mcp.providers.runware import RUNWARE_MODELS, RunwareModelConfig, RunwareProvider
from imagegen_mcp.resolver import find_model
from imagegen_mcp.testing import FunctionModelConfig, FunctionProvider
from tests.fakes.palette import PaletteProvider


def test_builtin_providers_come_from_entry_points() -> None:
    assert {t.__name__ for t in discover_provider_types()} >= {"RunwareProvider", "FluxLocalProvider", "GeminiProvider"}


def test_runware_seed_values() -> None:
    assert RunwareProvider.info.priority == 1
    assert RunwareProvider.info.default_model == "juggernaut_pro"
    expected = {
        "juggernaut_pro": ("rundiffusion:130@100", 20, 7.5),
        "juggernaut_lightning": ("rundiffusion:110@101", 4, 1.0),
        "flux_schnell": ("runware:100@1", 4, 3.5),
        "flux_kontext_dev": ("runware:106@1", 28, 2.5),
        "flux_kontext_pro": ("bfl:3@1", None, None),
        "hidream_fast": ("runware:97@3", 8, 7.0),
    }
    models = registry(RUNWARE_MODELS)
    assert list(models) == list(expected)
    for key, (air, steps, cfg) in expected.items():
        model = models[key]
        assert (model.air, model.default_steps, model.default_guidance) == (air, steps, cfg)
        if model.inputs.instruction_edit:  # Kontext: larger images, and no negative prompt
            assert (model.default_negative_prompt, model.max_resolution) == (None, 1568)
        else:
            assert model.default_negative_prompt == "worst quality, low quality, blurry"
            assert model.max_resolution == 1024


def test_flux_local_seed_values() -> None:
    assert FluxLocalProvider.info.priority == 2
    assert FluxLocalProvider.info.default_model == "lightning_4step"
    for key, filename, steps in [
        ("lightning_4step", "sdxl_lightning_4step.safetensors", 4),
        ("lightning_8step", "sdxl_lightning_8step.safetensors", 8),
    ]:
        model = registry(FLUX_LOCAL_MODELS)[key].model_dump()
        assert model["default_steps"] == steps and model["default_guidance"] == 0.0
        assert model["pipeline"] == "sdxl"
        assert "ByteDance/SDXL-Lightning" in str(model) and filename in str(model)
        assert model["scheduler"]["config"] == {"timestep_spacing": "trailing", "prediction_type": "epsilon"}
    juggernaut = registry(FLUX_LOCAL_MODELS)["juggernaut_xi"].model_dump()
    assert "RunDiffusion/Juggernaut-XI-v11" in str(juggernaut)
    assert "Juggernaut-XI-byRunDiffusion.safetensors" in str(juggernaut)
    assert (juggernaut["default_steps"], juggernaut["default_guidance"]) == (30, 4.5)
    assert juggernaut["default_negative_prompt"] == "fake eyes, bad hands, deformed eyes"
    assert juggernaut["scheduler"]["config"] == {"algorithm_type": "sde-dpmsolver++", "solver_type": "midpoint"}


def test_gemini_catalog() -> None:
    assert GeminiProvider.info.priority == 3
    default = registry(GEMINI_MODELS)[GeminiProvider.info.default_model]
    assert default.api_model == "gemini-nano-banana-2.1"
    assert {model.api_model for model in GEMINI_MODELS} >= {"gemini-3.1-flash-image", "gemini-3-pro-image"}


def test_model_configs_require_their_fields() -> None:
    with pytest.raises(ValidationError, match="air"):
        RunwareModelConfig(key="x", display_name="X", default_steps=4, default_guidance=1.0)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="extra"):
        RunwareModelConfig(key="x", display_name="X", air="a:1@1", default_steps=4, default_guidance=1.0, colour=1)  # type: ignore[call-arg]


def test_a_key_two_providers_have_is_ambiguous_bare_and_fine_in_full(make_settings: Callable[..., Settings]) -> None:
    """A user's local ``juggernaut_pro`` does not stop the server because Runware has one too."""
    clash = FunctionProvider(name="mine", models=[FunctionModelConfig(key="juggernaut_pro")])
    states = Catalog.load(make_settings(), [RunwareProvider, clash]).states()
    with pytest.raises(ImageGenError) as caught:
        find_model(states, "juggernaut_pro")
    assert caught.value.code == ErrorCode.MODEL_NOT_FOUND
    assert (
        caught.value.message
        == "Model 'juggernaut_pro' is ambiguous: mine:juggernaut_pro, runware:juggernaut_pro all have that key."
    )
    assert find_model(states, "mine:juggernaut_pro")[0].name == "mine"
    assert find_model(states, "juggernaut_pro", provider="runware")[0].name == "runware"


def test_models_are_held_by_the_instance(make_settings: Callable[..., Settings]) -> None:
    """Each instance owns its registry: adding a model to one touches neither the class nor another instance."""
    first, second = RunwareProvider(make_settings()), RunwareProvider(make_settings())
    first.models["extra"] = RunwareModelConfig(
        key="extra", display_name="Extra", air="a:1@1", default_steps=4, default_guidance=1.0
    )
    assert "extra" not in second.models
    assert set(second.models) == {model.key for model in RUNWARE_MODELS}


def test_duplicate_provider_name_is_rejected(make_settings: Callable[..., Settings]) -> None:
    with pytest.raises(CatalogError, match="two providers are named 'palette'"):
        Catalog.load(make_settings(), [PaletteProvider, PaletteProvider])


def test_duplicate_key_within_a_provider_is_rejected() -> None:
    model = RUNWARE_MODELS[2]
    with pytest.raises(ValueError, match="flux_schnell"):
        registry([model, model])


def test_model_ids_point_catalog_entries_at_other_vendor_ids(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(IMAGEGEN_MODEL_IDS="runware:juggernaut_pro=rundiffusion:130@101, gemini:x=y")
    provider = RunwareProvider(settings)
    assert provider.models["juggernaut_pro"].air == "rundiffusion:130@101"
    assert provider.models["flux_schnell"].air == "runware:100@1"
    error = provider.retired_error(provider.models["juggernaut_pro"], "404 model not found")
    assert error.code.value == "model_retired" and error.allows_fallback
    assert "'rundiffusion:130@101'" in error.message and "likely retired" in error.message
    assert 'IMAGEGEN_MODEL_IDS="runware:juggernaut_pro=<current id>"' in error.remediation[0]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("runware:nope=a:1@1", "IMAGEGEN_MODEL_IDS: runware has no model nope"),
        ("juggernaut_pro=a:1@1", "is not 'provider:key=vendor model id'"),
        ("runware:juggernaut_pro=", "is not 'provider:key=vendor model id'"),
    ],
)
def test_bad_model_ids_stop_the_start(make_settings: Callable[..., Settings], value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RunwareProvider(make_settings(IMAGEGEN_MODEL_IDS=value))
