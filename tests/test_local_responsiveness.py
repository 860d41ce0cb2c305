"""The server keeps answering while a first local generation imports torch and diffusers and loads its pipeline.

Each scenario runs in a fresh interpreter (tests/first_generation.py), so that the imports are really cold.
The assertions are on the order in which the client saw things, never on how long they took.
"""

from __future__ import annotations

import gc
import importlib
import importlib.util
import sys
from pathlib import Path

import pytest

from imagegen_mcp.errors import ProviderUnavailableError
from imagegen_mcp.providers.base import LoraSpec
from imagegen_mcp.providers.flux_local.config import FluxModelConfig
from imagegen_mcp.providers.flux_local.weights import WeightsLocator, required_files
from tests.fakes.tiny_pipelines import EULER_TRAILING, TinyPipelines
from tests.first_generation import FirstGeneration, run_first_generation

LOADING = "loading tiny_sdxl (first use)"
IMPORTING_TORCH = "importing torch (first use)"
IMPORTING_DIFFUSERS = "importing diffusers and transformers (first use)"
FIRST_STEP = "image 1/1: step 1/"
#: list_providers answers that show the event loop served while a phase ran; a blocked loop answers none.
ANSWERS = 3


@pytest.fixture(scope="module")
def first_generation(tiny_pipelines: TinyPipelines, tmp_path_factory: pytest.TempPathFactory) -> FirstGeneration:
    return run_first_generation(tiny_pipelines.root, tmp_path_factory.mktemp("first_generation"), baseline_calls=3)


@pytest.mark.slow
def test_list_providers_imports_nothing_heavy(first_generation: FirstGeneration) -> None:
    # Availability of every tiny model (hub cache ones included) was checked without importing any of them.
    assert first_generation.heavy_imported_before == []


@pytest.mark.slow
def test_the_client_hears_of_the_load_before_the_imports_start(first_generation: FirstGeneration) -> None:
    messages = first_generation.messages
    assert messages[:3] == [LOADING, IMPORTING_TORCH, IMPORTING_DIFFUSERS]
    assert messages.index(IMPORTING_DIFFUSERS) < next(i for i, m in enumerate(messages) if m.startswith(FIRST_STEP))


@pytest.mark.slow
def test_list_providers_answers_while_torch_is_imported(first_generation: FirstGeneration) -> None:
    # The worker sends each notification just before that import starts, so an answer between the two was
    # given while torch was being imported.
    assert first_generation.answered_between(IMPORTING_TORCH, IMPORTING_DIFFUSERS) >= ANSWERS


@pytest.mark.slow
def test_list_providers_answers_while_diffusers_is_imported_and_the_pipeline_loads(
    first_generation: FirstGeneration,
) -> None:
    assert first_generation.answered_between(IMPORTING_DIFFUSERS, FIRST_STEP) >= ANSWERS


@pytest.mark.slow
def test_the_generation_succeeds_and_leaves_the_interpreter_as_it_was(first_generation: FirstGeneration) -> None:
    kinds = [event.kind for event in first_generation.events]
    assert "result" in kinds and kinds.index("result") > kinds.index("progress")
    assert first_generation.messages[-1] == "saving images"
    assert first_generation.gc_enabled_after
    assert first_generation.switch_interval_after == 0.005  # Python's default, which the process started with


@pytest.mark.slow
def test_the_imports_left_their_objects_frozen_and_opened_torch_off_the_gil(
    first_generation: FirstGeneration,
) -> None:
    # What keeps the loop's share of the GIL: no full collection rescans the imported modules, and torch's
    # extension module was opened (libtorch's initialisers run) by the loader that releases the GIL.
    assert first_generation.gc_frozen_after > 100_000
    assert first_generation.torch_c_loader == "_PreopenedExtensionLoader"


def test_an_import_window_preopens_extension_modules_and_restores_what_it_found() -> None:
    from imagegen_mcp.providers.flux_local.provider import _SHARED_GIL_IMPORTS, _PreopenedExtensionLoader

    name = "xxlimited_35"  # a stdlib extension module that nothing imports
    if name in sys.modules or importlib.util.find_spec(name) is None:
        pytest.skip(f"{name} is already imported or not built")
    collecting, interval = gc.isenabled(), sys.getswitchinterval()
    gc.disable()
    sys.setswitchinterval(0.01)
    try:
        with _SHARED_GIL_IMPORTS.running():
            with _SHARED_GIL_IMPORTS.running():
                module = importlib.import_module(name)
            assert sys.getswitchinterval() == 0.0005  # the outer window is still open
        assert (sys.getswitchinterval(), gc.isenabled()) == (0.01, False)
    finally:
        sys.setswitchinterval(interval)
        if collecting:
            gc.enable()
    assert type(module.__loader__) is _PreopenedExtensionLoader
    assert module.Xxo().demo(None) is None  # the module works


def _write_repo(cache: Path, repo_id: str, ref: str | None, snapshots: dict[str, list[str]]) -> None:
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    if ref is not None:
        (repo / "refs").mkdir(parents=True)
        (repo / "refs" / "main").write_text(ref)
    for revision, names in snapshots.items():
        for name in names:
            (repo / "snapshots" / revision / name).parent.mkdir(parents=True, exist_ok=True)
            (repo / "snapshots" / revision / name).write_bytes(b"x")


COMMIT, OTHER = "a" * 40, "b" * 40
NAMES = [alternatives[0] for alternatives in required_files("sd", weights=True)]
LAYOUTS = {
    "complete": (COMMIT, {COMMIT: NAMES}),
    "a file short": (COMMIT, {COMMIT: NAMES[:-1]}),
    "only another commit": (COMMIT, {OTHER: NAMES}),
    "no refs/main": (None, {"main": NAMES}),
    "no snapshot": (COMMIT, {}),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_hub_cache_lookups_agree_with_huggingface_hub(tmp_path: Path, layout: str) -> None:
    """Availability reads the hub cache's layout itself (importing huggingface_hub's reader takes ~100 ms on the
    event loop); it must find exactly what ``try_to_load_from_cache`` finds."""
    from huggingface_hub import try_to_load_from_cache

    ref, snapshots = LAYOUTS[layout]
    _write_repo(tmp_path, "org/repo", ref, snapshots)
    model = FluxModelConfig(
        key="m",
        display_name=layout,
        pipeline="sd",
        repo_id="org/repo",
        scheduler=EULER_TRAILING,
        default_steps=4,
        default_guidance=0.0,
    )
    locator = WeightsLocator(tmp_path, allow_download=False)
    found = [try_to_load_from_cache("org/repo", name, cache_dir=tmp_path) for name in NAMES]
    assert (locator.missing(model) is None) == all(isinstance(path, str) for path in found)
    if locator.missing(model) is None:
        assert str(locator.locate(model).folder / NAMES[0]) == found[0]


def test_a_hub_lora_name_cannot_leave_its_snapshot(tmp_path: Path) -> None:
    _write_repo(tmp_path, "org/repo", COMMIT, {COMMIT: ["lora.safetensors"]})
    (tmp_path / "models--org--repo" / "outside.safetensors").write_bytes(b"x")
    locator = WeightsLocator(tmp_path, allow_download=False)
    assert locator.lora_file(LoraSpec(model="org/repo/lora.safetensors")).is_file()
    with pytest.raises(ProviderUnavailableError, match="not in the Hugging Face cache"):
        locator.lora_file(LoraSpec(model="org/repo/../../outside.safetensors"))
