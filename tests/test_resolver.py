"""The resolver as a table: same inputs, same plan, whatever order the providers arrive in."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from imagegen_mcp.errors import ErrorCode, ImageGenError
from imagegen_mcp.providers.base import Availability, EditNeeds, ImageInputs, RetiredModel
from imagegen_mcp.resolver import ProviderState, effective_order, plan

ON = Availability(met=True)
RUNWARE = ProviderState("runware", 1, "juggernaut_pro", ("juggernaut_pro", "flux_schnell"), ON)
LOCAL = ProviderState("flux_local", 2, "lightning_4step", ("lightning_4step", "juggernaut_xi"), ON)
GEMINI = ProviderState("gemini", 3, "gemini_flash_image", ("gemini_flash_image", "gemini_pro_image"), ON)


def off(state: ProviderState, reason: str = "key not set") -> ProviderState:
    return ProviderState(
        state.name, state.priority, state.default_model, state.models, Availability(False, reason, ("fix it",))
    )


def tie(state: ProviderState, priority: int) -> ProviderState:
    return ProviderState(state.name, priority, state.default_model, state.models, state.availability)


ALL = [RUNWARE, LOCAL, GEMINI]

# (case, states, plan arguments, expected candidates as provider:model)
CASES: list[tuple[str, list[ProviderState], dict[str, Any], list[str]]] = [
    (
        "default is the highest priority",
        ALL,
        {},
        ["runware:juggernaut_pro", "flux_local:lightning_4step", "gemini:gemini_flash_image"],
    ),
    ("strict keeps only the first", ALL, {"mode": "strict"}, ["runware:juggernaut_pro"]),
    (
        "explicit model first",
        ALL,
        {"model": "gemini:gemini_pro_image"},
        ["gemini:gemini_pro_image", "runware:juggernaut_pro", "flux_local:lightning_4step"],
    ),
    (
        "bare model key",
        ALL,
        {"model": "juggernaut_xi"},
        ["flux_local:juggernaut_xi", "runware:juggernaut_pro", "gemini:gemini_flash_image"],
    ),
    ("explicit model, strict", ALL, {"model": "flux_schnell", "mode": "strict"}, ["runware:flux_schnell"]),
    (
        "explicit provider uses its default model",
        ALL,
        {"provider": "gemini"},
        ["gemini:gemini_flash_image", "runware:juggernaut_pro", "flux_local:lightning_4step"],
    ),
    (
        "model and its own provider",
        ALL,
        {"model": "gemini_pro_image", "provider": "gemini", "mode": "strict"},
        ["gemini:gemini_pro_image"],
    ),
    (
        "configured default provider",
        ALL,
        {"default_provider": "flux_local"},
        ["flux_local:lightning_4step", "runware:juggernaut_pro", "gemini:gemini_flash_image"],
    ),
    (
        "configured default model",
        ALL,
        {"default_model": "gemini:gemini_pro_image", "mode": "strict"},
        ["gemini:gemini_pro_image"],
    ),
    (
        "default model beats default provider",
        ALL,
        {"default_model": "juggernaut_xi", "default_provider": "gemini", "mode": "strict"},
        ["flux_local:juggernaut_xi"],
    ),
    (
        "provider request uses the default model when it is that provider's",
        ALL,
        {"provider": "flux_local", "default_model": "juggernaut_xi", "mode": "strict"},
        ["flux_local:juggernaut_xi"],
    ),
    (
        "unavailable default stays first (its reason is reported), then the others",
        [off(RUNWARE), LOCAL, GEMINI],
        {},
        ["runware:juggernaut_pro", "flux_local:lightning_4step", "gemini:gemini_flash_image"],
    ),
    (
        "unavailable fallbacks stay in the plan, to be skipped with their reason",
        [RUNWARE, off(LOCAL), GEMINI],
        {},
        ["runware:juggernaut_pro", "flux_local:lightning_4step", "gemini:gemini_flash_image"],
    ),
    (
        "all unavailable: every provider is considered",
        [off(RUNWARE), off(LOCAL), off(GEMINI)],
        {},
        ["runware:juggernaut_pro", "flux_local:lightning_4step", "gemini:gemini_flash_image"],
    ),
    (
        "all unavailable, strict",
        [off(RUNWARE), off(LOCAL), off(GEMINI)],
        {"mode": "strict"},
        ["runware:juggernaut_pro"],
    ),
    (
        "priority ties are broken by name",
        [tie(RUNWARE, 1), tie(LOCAL, 1), tie(GEMINI, 1)],
        {},
        ["flux_local:lightning_4step", "gemini:gemini_flash_image", "runware:juggernaut_pro"],
    ),
    (
        "provider order overrides priority",
        ALL,
        {"provider_order": ("gemini", "flux_local")},
        ["gemini:gemini_flash_image", "flux_local:lightning_4step", "runware:juggernaut_pro"],
    ),
    (
        "partial provider order: the rest by priority",
        ALL,
        {"provider_order": ("gemini",)},
        ["gemini:gemini_flash_image", "runware:juggernaut_pro", "flux_local:lightning_4step"],
    ),
    (
        "explicit default provider with an order",
        ALL,
        {"default_provider": "runware", "provider_order": ("gemini", "flux_local")},
        ["runware:juggernaut_pro", "gemini:gemini_flash_image", "flux_local:lightning_4step"],
    ),
]


@pytest.mark.parametrize(("case", "states", "arguments", "expected"), CASES, ids=[c[0] for c in CASES])
def test_plan_table(case: str, states: list[ProviderState], arguments: dict[str, Any], expected: list[str]) -> None:
    arguments = {"mode": "auto", **arguments}
    assert [c.id for c in plan(states, **arguments).candidates] == expected


@pytest.mark.parametrize(("case", "states", "arguments", "expected"), CASES, ids=[c[0] for c in CASES])
def test_plan_ignores_registration_order(
    case: str, states: list[ProviderState], arguments: dict[str, Any], expected: list[str]
) -> None:
    arguments = {"mode": "auto", **arguments}
    plans = {plan(list(order), **arguments) for order in itertools.permutations(states)}
    assert len(plans) == 1


def test_candidates_carry_their_availability_from_the_snapshot() -> None:
    candidates = plan([off(RUNWARE, "RUNWARE_API_KEY is not set"), LOCAL, off(GEMINI)], mode="auto").candidates
    assert [c.availability.met for c in candidates] == [False, True, False]
    assert candidates[0].availability.reason == "RUNWARE_API_KEY is not set"
    assert candidates[0].why == "first provider in the effective order"
    assert candidates[2].why == "fallback (order 3)"


def test_a_model_whose_availability_differs_carries_its_own() -> None:
    weights = Availability(False, "weights of juggernaut_xi missing", ("hf download RunDiffusion/Juggernaut-XI-v11",))
    local = ProviderState(
        LOCAL.name, 2, LOCAL.default_model, LOCAL.models, Availability(True, models={"juggernaut_xi": weights})
    )
    candidates = plan([RUNWARE, local], mode="auto", model="juggernaut_xi").candidates
    assert candidates[0].availability == weights
    assert plan([RUNWARE, local], mode="auto", model="lightning_4step").candidates[0].availability.met


def test_effective_order() -> None:
    assert effective_order(ALL) == ["runware", "flux_local", "gemini"]
    assert effective_order(ALL, ["gemini"]) == ["gemini", "runware", "flux_local"]


@pytest.mark.parametrize(
    ("arguments", "code", "text"),
    [
        ({"model": "dall-e-3"}, ErrorCode.MODEL_NOT_FOUND, "runware:juggernaut_pro"),
        ({"model": "gemini:juggernaut_pro"}, ErrorCode.MODEL_NOT_FOUND, "Available models"),
        ({"model": "openai:dall-e"}, ErrorCode.PROVIDER_NOT_FOUND, "Known providers"),
        ({"provider": "openai"}, ErrorCode.PROVIDER_NOT_FOUND, "flux_local, gemini, runware"),
        ({"model": "juggernaut_pro", "provider": "gemini"}, ErrorCode.INVALID_REQUEST, "belongs to provider 'runware'"),
    ],
)
def test_lookup_errors(arguments: dict[str, Any], code: ErrorCode, text: str) -> None:
    with pytest.raises(ImageGenError) as caught:
        plan(ALL, mode="auto", **arguments)
    assert caught.value.code == code
    assert text in caught.value.message
    assert caught.value.remediation


def test_a_retired_name_is_not_found_and_the_message_names_its_replacement() -> None:
    note = "Google shut gemini-2.5-flash-image down on 2 October 2026"
    gemini = ProviderState(
        GEMINI.name,
        3,
        GEMINI.default_model,
        GEMINI.models,
        ON,
        {"gemini-2.5-flash-image": RetiredModel("gemini_pro_image", note)},
    )
    for ref in ("gemini-2.5-flash-image", "gemini:gemini-2.5-flash-image"):
        with pytest.raises(ImageGenError) as caught:
            plan([RUNWARE, gemini], mode="auto", model=ref)
        assert caught.value.code == ErrorCode.MODEL_NOT_FOUND
        assert (
            caught.value.message
            == f"Model {ref!r} is no longer served: {note}. Its replacement is gemini:gemini_pro_image."
        )
        assert caught.value.remediation[0] == "Use model 'gemini:gemini_pro_image'"
    with pytest.raises(ImageGenError, match="Available models"):
        plan([RUNWARE, gemini], mode="auto", model="runware:gemini-2.5-flash-image")


EDITS = ImageInputs(image_to_image=True, inpaint=True)
INSTRUCTIONS = ImageInputs(instruction_edit=True, max_reference_images=3)


def able(state: ProviderState, inputs: dict[str, ImageInputs]) -> ProviderState:
    return ProviderState(state.name, state.priority, state.default_model, state.models, state.availability, {}, inputs)


# Runware: the default inpaints; flux_schnell only generates. Local: juggernaut_xi edits, the default does not.
# Gemini: edits by instruction, with references.
EDITING = [
    able(RUNWARE, {"juggernaut_pro": EDITS}),
    able(LOCAL, {"juggernaut_xi": EDITS}),
    able(GEMINI, {"gemini_flash_image": INSTRUCTIONS, "gemini_pro_image": INSTRUCTIONS}),
]


@pytest.mark.parametrize(
    ("case", "arguments", "needs", "expected"),
    [
        (
            "plain generation ignores input capabilities",
            {},
            None,
            ["runware:juggernaut_pro", "flux_local:lightning_4step", "gemini:gemini_flash_image"],
        ),
        (
            "an edit: each provider's first model that can",
            {},
            EditNeeds(mask=False, references=0),
            ["runware:juggernaut_pro", "flux_local:juggernaut_xi", "gemini:gemini_flash_image"],
        ),
        (
            "a mask: providers without inpainting stay, marked",
            {},
            EditNeeds(mask=True, references=0),
            ["runware:juggernaut_pro", "flux_local:juggernaut_xi", "gemini:gemini_flash_image"],
        ),
        (
            "references: only Gemini can",
            {"provider": "gemini"},
            EditNeeds(mask=False, references=2),
            ["gemini:gemini_flash_image", "runware:juggernaut_pro", "flux_local:lightning_4step"],
        ),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_capability_aware_plans(
    case: str, arguments: dict[str, Any], needs: EditNeeds | None, expected: list[str]
) -> None:
    for order in itertools.permutations(EDITING):
        candidates = plan(list(order), mode="auto", needs=needs, **arguments).candidates
        assert [c.id for c in candidates] == expected


def test_fallback_skips_a_provider_without_the_capability_and_says_why() -> None:
    masked = plan(EDITING, mode="auto", needs=EditNeeds(mask=True, references=0)).candidates
    assert [c.unsuitable for c in masked] == [None, None, "no gemini model can edit an image, inpaint with a mask"]
    referenced = plan(EDITING, mode="auto", provider="gemini", needs=EditNeeds(mask=False, references=2)).candidates
    assert referenced[1].unsuitable == "no runware model can edit an image, take 2 reference image(s)"
    assert "juggernaut_xi" not in referenced[2].id and referenced[2].unsuitable is not None


def test_an_explicit_model_without_the_capability_names_the_models_that_have_it() -> None:
    with pytest.raises(ImageGenError) as caught:
        plan(EDITING, mode="auto", model="runware:flux_schnell", needs=EditNeeds(mask=True, references=0))
    error = caught.value
    assert error.code == ErrorCode.INVALID_REQUEST
    assert error.message == (
        "runware:flux_schnell cannot edit an image, inpaint with a mask: it takes no input image. "
        "Models that can: runware:juggernaut_pro, flux_local:juggernaut_xi."
    )
    assert error.details["capable_models"] == ["runware:juggernaut_pro", "flux_local:juggernaut_xi"]
