"""``imagegen-mcp pull`` against the loopback Hugging Face Hub, through the real command in a subprocess.

huggingface_hub reads ``HF_ENDPOINT`` and its other settings when it is imported, so every pull runs as its
own process (``tests.fakes.tiny_flux_cli``) with the environment :func:`use_fake_hub` sets. The weights here
are a few kilobytes of bytes: availability only looks at which files the cache holds. The last test pulls
the tiny SD pipeline's real files and generates with them on a server that was running all along.
"""

from __future__ import annotations

import hashlib
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio.to_thread
import pytest
from mcp import StdioServerParameters
from mcp.client import Client

from imagegen_mcp.config import Settings
from imagegen_mcp.errors import AuthenticationError, ProviderError
from imagegen_mcp.providers.flux_local import FluxLocalProvider
from imagegen_mcp.providers.flux_local.config import FluxModelConfig, SchedulerConfig
from tests.e2e import REPO, assert_image_result, clean_environ, error_of
from tests.fakes.hf_hub import HUB_TOKEN, BodyFault, FakeHub, FakeRepo, git_blob_id, sha256, use_fake_hub
from tests.fakes.tiny_flux_cli import provider_type, write_models
from tests.fakes.tiny_pipelines import HUB_COMMIT, TinyPipelines, tiny_model_configs

SD_REPO = "acme/tiny-sd"
CHECKPOINT_REPO = "acme/tiny-checkpoint"
GATED_REPO = "acme/gated-sd"
CHECKPOINT = "tiny.safetensors"
UNET = "unet/diffusion_pytorch_model.safetensors"


def _data(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


#: What an SD-class diffusers repository must hold to be available.
SD_FILES = {
    "model_index.json": b'{"_class_name": "StableDiffusionPipeline"}',
    "scheduler/scheduler_config.json": b'{"_class_name": "EulerDiscreteScheduler"}',
    "unet/config.json": b'{"sample_size": 8}',
    UNET: _data(6000, 1),
    "vae/config.json": b'{"latent_channels": 4}',
    "vae/diffusion_pytorch_model.safetensors": _data(3000, 2),
    "text_encoder/config.json": b'{"hidden_size": 8}',
    "text_encoder/model.safetensors": _data(2000, 3),
    "tokenizer/tokenizer_config.json": b'{"model_max_length": 77}',
    "tokenizer/vocab.json": b'{"a": 0}',
    "tokenizer/merges.txt": b"#version: 0.2\n",
}
SD_CONFIGS = sorted(name for name in SD_FILES if name.endswith((".json", ".txt")))
#: What such a repository holds beside that, and a pull leaves on the Hub.
SD_EXTRAS = {
    "README.md": b"# tiny-sd\n",
    "unet/diffusion_pytorch_model.fp16.safetensors": _data(3000, 4),
    "tiny-sd-pruned.safetensors": _data(4000, 5),
}
CHECKPOINT_DATA = _data(8000, 6)
REPOS = {
    SD_REPO: FakeRepo({**SD_FILES, **SD_EXTRAS}),
    CHECKPOINT_REPO: FakeRepo({CHECKPOINT: CHECKPOINT_DATA, "README.md": b"# tiny checkpoint\n"}),
    GATED_REPO: FakeRepo(SD_FILES, gated=True),
}


def _model(key: str, **source: object) -> FluxModelConfig:
    return FluxModelConfig.model_validate(
        {
            "key": key,
            "display_name": key,
            "pipeline": "sd",
            "scheduler": SchedulerConfig(class_name="EulerDiscreteScheduler"),
            "default_steps": 1,
            "default_guidance": 0.0,
            "default_width": 512,
            "default_height": 512,
            **source,
        }
    )


HUB_MODELS = [
    _model("tiny_sd", repo_id=SD_REPO),
    _model("tiny_checkpoint", repo_id=CHECKPOINT_REPO, filename=CHECKPOINT, base_repo_id=SD_REPO),
    _model("tiny_gated", repo_id=GATED_REPO),
    _model("tiny_no_repo", repo_id="acme/missing"),
    _model("tiny_no_file", repo_id=CHECKPOINT_REPO, filename="other.safetensors", base_repo_id=SD_REPO),
]

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    with FakeHub(REPOS) as server:
        yield server


@pytest.fixture
def cache(hub: FakeHub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """huggingface_hub's default cache (``HF_HUB_CACHE``), empty, with the fake hub as the endpoint."""
    return use_fake_hub(monkeypatch, hub.url, tmp_path / "hf-home")


@pytest.fixture
def models(tmp_path: Path) -> list[FluxModelConfig]:
    """The hub models, a complete local folder and a local checkpoint that is not there."""
    folder = tmp_path / "local-sd"
    for name, data in SD_FILES.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    gone = tmp_path / "gone.safetensors"
    return [*HUB_MODELS, _model("tiny_local", path=folder), _model("tiny_gone", path=gone, base_path=folder)]


@pytest.fixture
def models_file(models: list[FluxModelConfig], tmp_path: Path) -> Path:
    return write_models(tmp_path / "models.json", models)


@pytest.fixture
def run(models_file: Path, cache: Path) -> Run:
    """``imagegen-mcp ARGS`` with the test models, in a subprocess; keyword arguments add variables."""

    def run(*args: str, **environ: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "tests.fakes.tiny_flux_cli", str(models_file), *args]
        env = clean_environ(**environ)
        return subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=120, check=False)

    return run


@pytest.fixture
def provider(
    models: list[FluxModelConfig], cache: Path, make_settings: Callable[..., Settings]
) -> Callable[..., FluxLocalProvider]:
    """The provider over the test models (in this process, on the CPU), to ask what it finds in a cache."""

    def make(**environ: str) -> FluxLocalProvider:
        return provider_type(models)(make_settings(FLUX_LOCAL_DEVICE="cpu", **environ))

    return make


def _repo_dir(cache: Path, repo_id: str) -> Path:
    return cache / ("models--" + repo_id.replace("/", "--"))


def _snapshot(cache: Path, hub: FakeHub, repo_id: str) -> Path:
    return _repo_dir(cache, repo_id) / "snapshots" / hub.repos[repo_id].commit


def _files_under(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())


def _sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _content_gets(hub: FakeHub) -> int:
    """How many GETs fetched a file's content, from the hub or the CDN."""
    return sum(
        request.method == "GET" and (request.origin == "cdn" or request.path.startswith("/api/resolve-cache/"))
        for request in hub.requests
    )


def _state(folder: Path) -> dict[str, tuple[int, int]]:
    """Every entry under ``folder`` with its size and modification time."""
    return {
        str(path.relative_to(folder)): (path.lstat().st_size, path.lstat().st_mtime_ns) for path in folder.rglob("*")
    }


def _assert_whole_blobs(repo_dir: Path) -> None:
    """Every blob the cache holds is complete: named by the hash of what it holds (an LFS file's sha256, a
    regular file's git blob id). A download cut short leaves at most a temporary ``.incomplete`` file."""
    for blob in (repo_dir / "blobs").iterdir():
        if blob.name.endswith(".incomplete"):
            continue
        data = blob.read_bytes()
        assert blob.name in (sha256(data), git_blob_id(data)), blob


# -- pulling -----------------------------------------------------------------------------------------


def test_pull_fetches_a_diffusers_repository_into_the_cache_the_provider_reads(
    hub: FakeHub, cache: Path, run: Run, provider: Callable[..., FluxLocalProvider], tmp_path: Path
) -> None:
    flux_cache = tmp_path / "flux-cache"
    before = provider(FLUX_LOCAL_CACHE_DIR=str(flux_cache)).check().model("tiny_sd")
    assert not before.met
    assert before.steps[0] == f"Download it: FLUX_LOCAL_CACHE_DIR={flux_cache} imagegen-mcp pull tiny_sd"

    # TQDM_POSITION=-1 shows huggingface_hub's progress bars although stderr is not a terminal.
    done = run("pull", "tiny_sd", FLUX_LOCAL_CACHE_DIR=str(flux_cache), TQDM_POSITION="-1")

    assert done.returncode == 0, done.stderr
    snapshot = _snapshot(flux_cache, hub, SD_REPO)
    # The weights and configs the pipeline loads; not the README, another precision or a root checkpoint.
    assert _files_under(snapshot) == sorted(SD_FILES)
    assert all(_sha256_of(snapshot / name) == sha256(data) for name, data in SD_FILES.items())
    assert provider(FLUX_LOCAL_CACHE_DIR=str(flux_cache)).check().model("tiny_sd").met
    assert not cache.exists()  # FLUX_LOCAL_CACHE_DIR wins over huggingface_hub's own cache
    lines = done.stdout.splitlines()
    assert f"fetched {SD_REPO}: {UNET} (6.0 kB)" in lines
    assert f"fetched {SD_REPO}: tokenizer/merges.txt (14 B)" in lines
    assert f"flux_local:tiny_sd is ready: fetched 11 file(s), 11.2 kB into {flux_cache}" in lines
    assert f"  the diffusers-format model: {snapshot}" in lines
    # The progress bars go to stderr, and only the download's: the listing before it shows none.
    assert "Fetching 11 files" in done.stderr and "dry-run" not in done.stderr
    assert "Fetching" not in done.stdout

    gets = _content_gets(hub)
    again = run("pull", "flux_local:tiny_sd", FLUX_LOCAL_CACHE_DIR=str(flux_cache))

    assert again.returncode == 0, again.stderr
    assert _content_gets(hub) == gets
    assert "already in the cache: 11 file(s)" in again.stdout
    assert f"flux_local:tiny_sd is ready: every file was already in {flux_cache}" in again.stdout


def test_pull_fetches_a_checkpoint_and_only_the_configs_of_its_base_model(
    hub: FakeHub, cache: Path, run: Run, provider: Callable[..., FluxLocalProvider]
) -> None:
    """Without FLUX_LOCAL_CACHE_DIR, into huggingface_hub's cache (HF_HUB_CACHE here), as the provider reads."""
    done = run("pull", "tiny_checkpoint")

    assert done.returncode == 0, done.stderr
    checkpoint = _snapshot(cache, hub, CHECKPOINT_REPO) / CHECKPOINT
    assert _files_under(checkpoint.parent) == [CHECKPOINT] and _sha256_of(checkpoint) == sha256(CHECKPOINT_DATA)
    assert _files_under(_snapshot(cache, hub, SD_REPO)) == SD_CONFIGS
    assert provider().check().model("tiny_checkpoint").met
    assert not provider().check().model("tiny_sd").met  # the base model's weights were not fetched
    assert f"fetched {CHECKPOINT_REPO}: {CHECKPOINT} (8.0 kB)" in done.stdout.splitlines()
    assert f"  the checkpoint: {checkpoint.parent}" in done.stdout.splitlines()


def test_a_connection_cut_mid_file_is_retried_to_a_complete_file(hub: FakeHub, cache: Path, run: Run) -> None:
    hub.fault(SD_REPO, UNET, BodyFault(times=1, cut_after=2500))

    done = run("pull", "tiny_sd")

    assert done.returncode == 0, done.stderr
    assert _sha256_of(_snapshot(cache, hub, SD_REPO) / UNET) == sha256(SD_FILES[UNET])
    # huggingface_hub writes 10 MiB pieces, so nothing of the small file was kept: the retry starts over.
    assert [request.range for request in hub.content_gets(SD_REPO, UNET)] == [None, None]
    _assert_whole_blobs(_repo_dir(cache, SD_REPO))


def test_a_pull_killed_mid_file_leaves_no_partial_file_in_the_cache_and_a_rerun_completes(
    hub: FakeHub, cache: Path, run: Run, provider: Callable[..., FluxLocalProvider], models_file: Path
) -> None:
    hub.fault(SD_REPO, UNET, BodyFault(chunk_size=500, chunk_delay_s=0.3))  # about 4 s for the whole file
    command = [sys.executable, "-m", "tests.fakes.tiny_flux_cli", str(models_file), "pull", "tiny_sd"]
    process = subprocess.Popen(command, env=clean_environ(), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not hub.content_gets(SD_REPO, UNET) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # a few chunks in
    process.kill()
    process.communicate(timeout=30)
    assert process.returncode == -signal.SIGKILL  # killed while the file was on its way, not after

    snapshot = _snapshot(cache, hub, SD_REPO)
    assert not (snapshot / UNET).exists()
    assert not provider().check().model("tiny_sd").met
    _assert_whole_blobs(_repo_dir(cache, SD_REPO))

    done = run("pull", "tiny_sd")

    assert done.returncode == 0, done.stderr
    assert _sha256_of(snapshot / UNET) == sha256(SD_FILES[UNET])
    assert provider().check().model("tiny_sd").met
    _assert_whole_blobs(_repo_dir(cache, SD_REPO))


def test_a_dry_run_lists_what_a_pull_would_fetch_and_writes_nothing(
    hub: FakeHub, cache: Path, run: Run, tmp_path: Path
) -> None:
    flux_cache = tmp_path / "flux-cache"

    done = run("pull", "tiny_checkpoint", "--dry-run", FLUX_LOCAL_CACHE_DIR=str(flux_cache))

    assert done.returncode == 0, done.stderr
    assert not flux_cache.exists() and not cache.exists()
    assert _content_gets(hub) == 0
    lines = done.stdout.splitlines()
    assert f"would fetch {CHECKPOINT_REPO}: {CHECKPOINT} (8.0 kB)" in lines
    assert f"would fetch {SD_REPO}: model_index.json ({len(SD_FILES['model_index.json'])} B)" in lines
    assert f"would fetch {SD_REPO}: {UNET} (6.0 kB)" not in lines
    assert lines[-3] == (
        f"flux_local:tiny_checkpoint: would fetch 9 file(s), 8.2 kB into {flux_cache} (dry run: nothing was written)"
    )

    # With the base model's configs already there, the dry run counts them as cached and leaves the cache
    # exactly as it was (a snapshot dry run of huggingface_hub's own would write refs/main).
    assert run("pull", "tiny_sd", FLUX_LOCAL_CACHE_DIR=str(flux_cache)).returncode == 0
    before = _state(flux_cache)

    again = run("pull", "tiny_checkpoint", "--dry-run", FLUX_LOCAL_CACHE_DIR=str(flux_cache))

    assert again.returncode == 0, again.stderr
    assert _state(flux_cache) == before
    assert "already in the cache: 8 file(s)" in again.stdout
    assert "would fetch 1 file(s), 8.0 kB" in again.stdout


def test_a_model_on_this_machine_has_nothing_to_pull(hub: FakeHub, run: Run, tmp_path: Path) -> None:
    done = run("pull", "tiny_local")

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "flux_local:tiny_local loads from files on this machine: nothing to pull",
        f"  the diffusers-format model: {tmp_path / 'local-sd'} (on this machine)",
    ]
    assert hub.requests == []


def test_a_local_file_that_is_not_there_is_not_pulled_either(hub: FakeHub, run: Run, tmp_path: Path) -> None:
    done = run("pull", "tiny_gone")

    assert done.returncode == 1
    gone = tmp_path / "gone.safetensors"
    assert done.stderr.splitlines() == [
        f"error [provider_unavailable]: tiny_gone loads the checkpoint from this machine, and checkpoint {gone} "
        "does not exist: there is nothing a pull can fetch for it",
        f"  fix: Put the checkpoint at {gone}, or point the model's path at where it is",
    ]
    assert hub.requests == []


# -- failures ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["tiny_nope", "flux_local:tiny_nope", "runware:tiny_sd"])
def test_an_unknown_model_names_the_models_command(hub: FakeHub, run: Run, name: str) -> None:
    done = run("pull", name)

    assert done.returncode == 1 and done.stdout == ""
    message, fix = done.stderr.splitlines()
    assert message.startswith("error [model_not_found]: ")
    assert fix == "  fix: Run `imagegen-mcp models --provider flux_local` to see the local models and their keys"
    assert hub.requests == []


def test_a_gated_repository_needs_a_granted_token(
    hub: FakeHub, cache: Path, run: Run, provider: Callable[..., FluxLocalProvider]
) -> None:
    refused = run("pull", "tiny_gated")

    assert refused.returncode == 1
    lines = refused.stderr.splitlines()
    assert lines[0] == (
        f"error [authentication_failed]: {GATED_REPO} (the diffusers-format model) is a gated repository on "
        "Hugging Face: it downloads only with the token of an account that accepted its terms"
    )
    assert lines[1] == f"  fix: Log in at {hub.url}/{GATED_REPO} and accept the model's terms"
    assert lines[2].startswith("  fix: Set HF_TOKEN to an access token of that account")
    assert lines[3] == "  fix: Then run it again: imagegen-mcp pull tiny_gated (files that completed are kept)"
    assert not (_repo_dir(cache, GATED_REPO) / "snapshots").exists()

    wrong = run("pull", "tiny_gated", HF_TOKEN="hf_someone_else")
    granted = run("pull", "tiny_gated", HF_TOKEN=HUB_TOKEN)

    assert wrong.returncode == 1 and "the token sent has not been granted access" in wrong.stderr
    assert granted.returncode == 0, granted.stderr
    assert provider().check().model("tiny_gated").met
    assert all(HUB_TOKEN not in text for text in (granted.stdout, granted.stderr))


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("tiny_no_repo", "Hugging Face has no repository acme/missing (or it is private)"),
        ("tiny_no_file", f"{CHECKPOINT_REPO} has no other.safetensors (the checkpoint)"),
    ],
)
def test_what_the_hub_does_not_have_is_the_models_configuration_to_fix(
    hub: FakeHub, cache: Path, run: Run, model: str, message: str
) -> None:
    done = run("pull", model)

    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert lines[0] == f"error [provider_error]: {message}"
    assert lines[1].startswith("  fix: Check the model's repo_id")
    assert "For a private repository, set HF_TOKEN" in lines[2]
    assert _content_gets(hub) == 0


def test_an_unreachable_hub_says_to_check_the_network_and_run_it_again(run: Run) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{sock.getsockname()[1]}"

    done = run("pull", "tiny_sd", HF_ENDPOINT=endpoint)

    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert lines[0].startswith(f"error [provider_error]: Could not download {SD_REPO} (the diffusers-format model)")
    assert "  fix: Check the network connection and try again" in lines
    assert "  fix: Then run it again: imagegen-mcp pull tiny_sd (files that completed are kept)" in lines


def test_offline_mode_is_named_instead_of_failing_on_the_network(hub: FakeHub, run: Run) -> None:
    done = run("pull", "tiny_sd", HF_HUB_OFFLINE="1")

    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "error [provider_unavailable]: HF_HUB_OFFLINE is set, so huggingface_hub makes no network requests",
        "  fix: Run the pull without it: HF_HUB_OFFLINE=0 imagegen-mcp pull tiny_sd",
    ]
    assert hub.requests == []


# -- the server's own downloads (FLUX_LOCAL_ALLOW_DOWNLOAD) -------------------------------------------


def test_the_servers_download_tells_a_gated_repository_from_a_missing_one(
    hub: FakeHub, cache: Path, provider: Callable[..., FluxLocalProvider]
) -> None:
    """In this process: use_fake_hub points huggingface_hub's constants at the fake hub."""
    weights = provider(FLUX_LOCAL_ALLOW_DOWNLOAD="true").weights
    models = {model.key: model for model in HUB_MODELS}

    with pytest.raises(AuthenticationError) as gated:
        weights.locate(models["tiny_gated"])
    with pytest.raises(ProviderError) as no_repo:
        weights.locate(models["tiny_no_repo"])
    with pytest.raises(ProviderError) as no_file:
        weights.locate(models["tiny_no_file"])

    # A token fixes the first, and another provider may serve the request meanwhile; the others are the
    # model's configuration: neither retried nor a reason to try elsewhere.
    assert gated.value.allows_fallback and not gated.value.retryable
    assert "HF_TOKEN" in gated.value.remediation[1]
    assert gated.value.remediation[2] == "Or download it beforehand: imagegen-mcp pull tiny_gated"
    for error in (no_repo.value, no_file.value):
        assert not error.retryable and not error.allows_fallback
        assert error.remediation[0].startswith("Check the model's repo_id")
    assert no_repo.value.message == "Hugging Face has no repository acme/missing (or it is private)"
    assert no_file.value.message.startswith(f"{CHECKPOINT_REPO} (the checkpoint): ")


# -- a running server ----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_model_pulled_while_the_server_runs_is_available_to_it_without_a_restart(
    tiny_pipelines: TinyPipelines, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tiny SD pipeline's real files on the fake hub: pulled, then generated with, by a server that
    started before they were there and that never reaches the hub itself (HF_HUB_OFFLINE)."""
    snapshot = tiny_pipelines.hub_cache / f"models--{TinyPipelines.repo_id('sd').replace('/', '--')}"
    snapshot = snapshot / "snapshots" / HUB_COMMIT
    files = {str(path.relative_to(snapshot)): path.read_bytes() for path in snapshot.rglob("*") if path.is_file()}
    (model,) = [model for model in tiny_model_configs(tiny_pipelines) if model.key == "tiny_sd_hub"]
    models_file = write_models(tmp_path / "models.json", [model])
    flux_cache = tmp_path / "flux-cache"
    settings = {"FLUX_LOCAL_DEVICE": "cpu", "FLUX_LOCAL_CACHE_DIR": str(flux_cache)}
    with FakeHub({TinyPipelines.repo_id("sd"): files}) as hub:
        use_fake_hub(monkeypatch, hub.url, tmp_path / "hf-home")
        server = StdioServerParameters(
            command=sys.executable,
            args=["-m", "tests.fakes.tiny_flux_cli", str(models_file), "serve"],
            env=clean_environ(IMAGEGEN_OUTPUT_DIR=str(tmp_path / "images"), HF_HUB_OFFLINE="1", **settings),
            cwd=str(REPO),
        )
        pull = [sys.executable, "-m", "tests.fakes.tiny_flux_cli", str(models_file), "pull", "tiny_sd_hub"]
        async with Client(server) as client:
            before = await client.call_tool("list_models", {"provider": "flux_local"})
            refused = await client.call_tool("generate_image", {"prompt": "a red cube", "model": "tiny_sd_hub"})
            pulled = await anyio.to_thread.run_sync(
                lambda: subprocess.run(
                    pull, env=clean_environ(**settings), cwd=REPO, capture_output=True, text=True, timeout=120
                )
            )
            hub_requests = len(hub.requests)
            after = await client.call_tool("list_models", {"provider": "flux_local"})
            made = await client.call_tool(
                "generate_image", {"prompt": "a red cube", "model": "flux_local:tiny_sd_hub", "seed": 5, "wait_s": 300}
            )

    (listed_before,) = (before.structured_content or {})["providers"][0]["models"]
    assert listed_before["available"] is False and "weights not on this machine" in listed_before["reason"]
    refusal = error_of(refused)
    assert refusal["code"] == "provider_unavailable"
    assert refusal["remediation"][0] == f"Download it: FLUX_LOCAL_CACHE_DIR={flux_cache} imagegen-mcp pull tiny_sd_hub"
    assert pulled.returncode == 0, pulled.stderr
    (listed_after,) = (after.structured_content or {})["providers"][0]["models"]
    assert listed_after["available"] is True and listed_after["reason"] is None
    (image,) = assert_image_result(made, count=1)
    assert (image["width"], image["height"], image["seed"]) == (128, 128, 5)
    assert len(hub.requests) == hub_requests  # the server loaded from the cache alone
