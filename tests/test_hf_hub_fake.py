"""The real ``huggingface_hub`` against the loopback Hub: the cache it fills, how it retries, what it raises.

These pin down the behaviour of the installed ``huggingface_hub`` that downloading a local model's weights
relies on, so a change in a new release shows here first.
"""

from __future__ import annotations

import hashlib
import random
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx2
import huggingface_hub
import pytest
from huggingface_hub import (
    DryRunFileInfo,
    HfApi,
    RepoFile,
    RepoFolder,
    constants,
    file_download,
    hf_hub_download,
    snapshot_download,
    try_to_load_from_cache,
)
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from tests.fakes.hf_hub import HUB_TOKEN, BodyFault, FakeHub, FakeRepo, git_blob_id, sha256, use_fake_hub


def _data(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


CHECKPOINT_REPO = "acme/tiny-checkpoint"
CHECKPOINT = "tiny-checkpoint.safetensors"
PIPELINE_REPO = "acme/tiny-sdxl"
GATED_REPO = "acme/gated"
PIPELINE_FILES = {
    "model_index.json": b'{"_class_name": "StableDiffusionXLPipeline"}',
    "scheduler/scheduler_config.json": b'{"_class_name": "EulerDiscreteScheduler"}',
    "unet/config.json": b'{"sample_size": 8}',
    "unet/diffusion_pytorch_model.safetensors": _data(6000, 1),
    "unet/diffusion_pytorch_model.fp16.safetensors": _data(3000, 2),
    "text_encoder/config.json": b'{"hidden_size": 8}',
    "text_encoder/model.safetensors": _data(4000, 3),
    "tokenizer/vocab.json": b'{"a": 0}',
    "tokenizer/merges.txt": b"#version: 0.2\n",
    "README.md": b"# tiny-sdxl\n",
}
CHECKPOINT_DATA = _data(8000, 4)
GATED_DATA = _data(2000, 5)
REPOS = {
    CHECKPOINT_REPO: FakeRepo({CHECKPOINT: CHECKPOINT_DATA, "README.md": b"# tiny checkpoint\n"}),
    PIPELINE_REPO: FakeRepo(PIPELINE_FILES),
    GATED_REPO: FakeRepo({"model.safetensors": GATED_DATA}, gated=True),
}


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    with FakeHub(REPOS) as server:
        yield server


@pytest.fixture
def cache(hub: FakeHub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The hub cache ``huggingface_hub`` uses by default, empty, with the fake hub as its endpoint."""
    return use_fake_hub(monkeypatch, hub.url, tmp_path / "hf-home")


@pytest.fixture
def retry_waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The pauses ``http_get`` makes before each retry, recorded instead of slept."""
    waits: list[float] = []
    monkeypatch.setattr(file_download, "time", SimpleNamespace(sleep=waits.append))
    return waits


def _repo_dir(cache: Path, repo_id: str) -> Path:
    return cache / ("models--" + repo_id.replace("/", "--"))


def _files_under(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())


def _sha256_of(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _calls(hub: FakeHub) -> list[tuple[str, str, str]]:
    return [(request.method, request.origin, request.path) for request in hub.requests]


def _checkpoint_gets(hub: FakeHub) -> list[str | None]:
    """The ``Range`` of each GET of the checkpoint's content."""
    return [request.range for request in hub.content_gets(CHECKPOINT_REPO, CHECKPOINT)]


# -- the cache layout --------------------------------------------------------------------------------


def test_hf_hub_download_fills_the_standard_cache_layout(hub: FakeHub, cache: Path) -> None:
    commit = hub.repos[CHECKPOINT_REPO].commit
    repo_dir = _repo_dir(cache, CHECKPOINT_REPO)

    path = Path(hf_hub_download(CHECKPOINT_REPO, CHECKPOINT))

    assert path == repo_dir / "snapshots" / commit / CHECKPOINT
    # An LFS file's blob is named by its sha256; the snapshot entry is a relative symlink to it.
    assert path.is_symlink() and path.resolve() == repo_dir / "blobs" / sha256(CHECKPOINT_DATA)
    assert (repo_dir / "refs" / "main").read_text() == commit
    assert _sha256_of(path) == sha256(CHECKPOINT_DATA)
    assert try_to_load_from_cache(CHECKPOINT_REPO, CHECKPOINT) == str(path)
    assert try_to_load_from_cache(CHECKPOINT_REPO, "README.md") is None
    # HEAD on the hub answers 302 with the metadata; the content comes straight from the CDN.
    blob = f"/repos/{CHECKPOINT_REPO}/{sha256(CHECKPOINT_DATA)}"
    assert _calls(hub) == [("HEAD", "hub", f"/{CHECKPOINT_REPO}/resolve/main/{CHECKPOINT}"), ("GET", "cdn", blob)]


def test_a_regular_file_is_named_by_its_git_blob_id_and_fetched_from_the_pinned_url(hub: FakeHub, cache: Path) -> None:
    commit = hub.repos[PIPELINE_REPO].commit
    pinned = f"/api/resolve-cache/models/{PIPELINE_REPO}/{commit}/unet/config.json"

    path = Path(hf_hub_download(PIPELINE_REPO, "unet/config.json"))

    blob = _repo_dir(cache, PIPELINE_REPO) / "blobs" / git_blob_id(PIPELINE_FILES["unet/config.json"])
    assert path.resolve() == blob
    assert _calls(hub) == [
        ("HEAD", "hub", f"/{PIPELINE_REPO}/resolve/main/unet/config.json"),
        ("HEAD", "hub", pinned),
        ("GET", "hub", pinned),
    ]


def test_a_cached_file_costs_one_head_request(hub: FakeHub, cache: Path) -> None:
    first = hf_hub_download(CHECKPOINT_REPO, CHECKPOINT)

    assert hf_hub_download(CHECKPOINT_REPO, CHECKPOINT) == first
    assert [method for method, _, _ in _calls(hub)] == ["HEAD", "GET", "HEAD"]


# -- snapshots ---------------------------------------------------------------------------------------


def test_snapshot_download_fetches_exactly_the_files_the_patterns_match(hub: FakeHub, cache: Path) -> None:
    commit = hub.repos[PIPELINE_REPO].commit
    # fnmatch's "*" crosses "/": "*.json" matches nested configs, "*/model.safetensors" only nested weights.
    patterns = ["*.json", "*.txt", "*/diffusion_pytorch_model.safetensors", "*/model.safetensors"]

    folder = Path(snapshot_download(PIPELINE_REPO, allow_patterns=patterns))

    assert folder == _repo_dir(cache, PIPELINE_REPO) / "snapshots" / commit
    assert _files_under(folder) == sorted(
        set(PIPELINE_FILES) - {"README.md", "unet/diffusion_pytorch_model.fp16.safetensors"}
    )
    assert all(_sha256_of(folder / name) == sha256(PIPELINE_FILES[name]) for name in _files_under(folder))
    listing, tree = hub.requests[:2]
    assert (listing.method, listing.path) == ("GET", f"/api/models/{PIPELINE_REPO}/revision/main")
    assert (tree.path, tree.query) == (
        f"/api/models/{PIPELINE_REPO}/tree/{commit}",
        {"recursive": "true", "expand": "false"},
    )
    # Every file is then resolved at the commit the listing named, never at "main".
    heads = [path for method, _, path in _calls(hub)[2:] if method == "HEAD" and "/resolve/" in path]
    assert heads and all(path.startswith(f"/{PIPELINE_REPO}/resolve/{commit}/") for path in heads)
    assert (_repo_dir(cache, PIPELINE_REPO) / "trees" / f"{commit}.json").is_file()


def test_a_complete_snapshot_is_checked_with_one_api_call(hub: FakeHub, cache: Path) -> None:
    snapshot_download(PIPELINE_REPO, allow_patterns=["*.json"])
    before = len(hub.requests)

    snapshot_download(PIPELINE_REPO, allow_patterns=["*.json"])

    # The commit's file listing is kept in trees/<commit>.json and the files are in its snapshot.
    assert _calls(hub)[before:] == [("GET", "hub", f"/api/models/{PIPELINE_REPO}/revision/main")]


# -- interrupted downloads ---------------------------------------------------------------------------


def test_a_cut_connection_is_retried_from_the_start_within_the_call(
    hub: FakeHub, cache: Path, retry_waits: list[float]
) -> None:
    hub.fault(CHECKPOINT_REPO, CHECKPOINT, BodyFault(times=2, cut_after=3000))

    path = hf_hub_download(CHECKPOINT_REPO, CHECKPOINT)

    assert _sha256_of(path) == sha256(CHECKPOINT_DATA)
    # Bytes are written in DOWNLOAD_CHUNK_SIZE (10 MiB) pieces: of a cut small file nothing was kept.
    assert _checkpoint_gets(hub) == [None, None, None]
    assert retry_waits == [1, 1]


def test_a_retry_resumes_after_the_last_written_chunk_and_progress_renews_the_retries(
    hub: FakeHub, cache: Path, retry_waits: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 1024)
    # Seven cuts, more than the five retries, but each attempt adds a chunk: the count starts over.
    hub.fault(CHECKPOINT_REPO, CHECKPOINT, BodyFault(times=7, cut_after=1500))

    path = hf_hub_download(CHECKPOINT_REPO, CHECKPOINT)

    assert _sha256_of(path) == sha256(CHECKPOINT_DATA)
    assert _checkpoint_gets(hub) == [None] + [f"bytes={1024 * n}-" for n in range(1, 8)]
    assert retry_waits == [1] * 7


def test_five_retries_without_progress_fail_the_call_and_the_next_run_starts_over(
    hub: FakeHub, cache: Path, retry_waits: list[float]
) -> None:
    hub.fault(CHECKPOINT_REPO, CHECKPOINT, BodyFault(times=6, cut_after=3000))

    with pytest.raises(httpx2.RemoteProtocolError):
        hf_hub_download(CHECKPOINT_REPO, CHECKPOINT)

    assert len(_checkpoint_gets(hub)) == 6 and retry_waits == [1] * 5
    # The partial download (a per-process "<blob>.<random>.incomplete") is deleted, not kept for later.
    assert _files_under(_repo_dir(cache, CHECKPOINT_REPO) / "blobs") == []
    assert try_to_load_from_cache(CHECKPOINT_REPO, CHECKPOINT) is None

    path = hf_hub_download(CHECKPOINT_REPO, CHECKPOINT)

    assert _sha256_of(path) == sha256(CHECKPOINT_DATA)
    assert _checkpoint_gets(hub)[6:] == [None]


def test_the_download_timeout_bounds_each_read_not_the_whole_body(
    hub: FakeHub, cache: Path, retry_waits: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(constants, "HF_HUB_DOWNLOAD_TIMEOUT", 0.5)
    # Four pauses of 0.15 s: longer than the timeout together, shorter one by one.
    hub.fault(CHECKPOINT_REPO, CHECKPOINT, BodyFault(chunk_size=2000, chunk_delay_s=0.15))

    hf_hub_download(CHECKPOINT_REPO, CHECKPOINT)

    assert len(_checkpoint_gets(hub)) == 1 and retry_waits == []

    hub.fault(PIPELINE_REPO, "unet/config.json", BodyFault(chunk_delay_s=1.2))

    path = hf_hub_download(PIPELINE_REPO, "unet/config.json")

    assert Path(path).read_bytes() == PIPELINE_FILES["unet/config.json"]
    assert len(hub.content_gets(PIPELINE_REPO, "unet/config.json")) == 2 and retry_waits == [1]


# -- dry runs ----------------------------------------------------------------------------------------


def test_a_dry_run_of_one_file_reports_its_size_and_writes_nothing(hub: FakeHub, cache: Path) -> None:
    commit = hub.repos[CHECKPOINT_REPO].commit

    info = hf_hub_download(CHECKPOINT_REPO, CHECKPOINT, dry_run=True)

    assert info == DryRunFileInfo(
        commit_hash=commit,
        file_size=len(CHECKPOINT_DATA),
        filename=CHECKPOINT,
        local_path=str(_repo_dir(cache, CHECKPOINT_REPO) / "snapshots" / commit / CHECKPOINT),
        is_cached=False,
        will_download=True,
    )
    assert not cache.exists()
    assert [method for method, _, _ in _calls(hub)] == ["HEAD"]

    hf_hub_download(CHECKPOINT_REPO, CHECKPOINT)
    cached = hf_hub_download(CHECKPOINT_REPO, CHECKPOINT, dry_run=True)

    assert (cached.is_cached, cached.will_download) == (True, False)


def test_a_dry_run_of_a_snapshot_lists_the_matching_files_and_writes_only_the_ref(hub: FakeHub, cache: Path) -> None:
    infos = snapshot_download(PIPELINE_REPO, allow_patterns=["*/diffusion_pytorch_model*.safetensors"], dry_run=True)

    sizes = {info.filename: info.file_size for info in infos}
    assert sizes == {name: len(PIPELINE_FILES[name]) for name in PIPELINE_FILES if name.startswith("unet/diffusion")}
    assert all(info.will_download and not info.is_cached for info in infos)
    # Unlike hf_hub_download's, this dry run records which commit "main" is.
    assert _files_under(cache) == [f"{_repo_dir(cache, PIPELINE_REPO).name}/refs/main"]


# -- errors ------------------------------------------------------------------------------------------


ERRORS: dict[str, tuple[Callable[[], object], type[HfHubHTTPError], int]] = {
    "unknown repo": (lambda: hf_hub_download("acme/missing", "config.json"), RepositoryNotFoundError, 401),
    "unknown repo, with a token": (
        lambda: hf_hub_download("acme/missing", "config.json", token=HUB_TOKEN),
        RepositoryNotFoundError,
        404,
    ),
    "unknown repo, snapshot": (lambda: snapshot_download("acme/missing"), RepositoryNotFoundError, 401),
    "unknown repo, model info": (lambda: HfApi().model_info("acme/missing"), RepositoryNotFoundError, 401),
    "unknown revision": (
        lambda: hf_hub_download(PIPELINE_REPO, "model_index.json", revision="v9"),
        RevisionNotFoundError,
        404,
    ),
    "unknown file": (lambda: hf_hub_download(PIPELINE_REPO, "missing.json"), RemoteEntryNotFoundError, 404),
    "gated, no token": (lambda: hf_hub_download(GATED_REPO, "model.safetensors"), GatedRepoError, 401),
    "gated, other token": (
        lambda: hf_hub_download(GATED_REPO, "model.safetensors", token="hf_someone_else"),
        GatedRepoError,
        403,
    ),
    "gated, snapshot": (lambda: snapshot_download(GATED_REPO), GatedRepoError, 401),
}


@pytest.mark.parametrize("case", ERRORS)
def test_hub_errors_raise_the_library_exception_classes(case: str, cache: Path) -> None:
    call, expected, status = ERRORS[case]

    with pytest.raises(HfHubHTTPError) as raised:
        call()

    assert raised.type is expected
    assert raised.value.response.status_code == status


def test_a_missing_file_is_remembered_in_the_cache(hub: FakeHub, cache: Path) -> None:
    with pytest.raises(RemoteEntryNotFoundError):
        hf_hub_download(PIPELINE_REPO, "missing.json")

    marker = _repo_dir(cache, PIPELINE_REPO) / ".no_exist" / hub.repos[PIPELINE_REPO].commit / "missing.json"
    assert marker.is_file()
    assert try_to_load_from_cache(PIPELINE_REPO, "missing.json") is huggingface_hub._CACHED_NO_EXIST


def test_a_gated_file_downloads_with_a_granted_token_that_never_reaches_the_cdn(
    hub: FakeHub, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", HUB_TOKEN)

    path = hf_hub_download(GATED_REPO, "model.safetensors")

    assert _sha256_of(path) == sha256(GATED_DATA)
    assert [(request.origin, request.token) for request in hub.requests] == [("hub", HUB_TOKEN), ("cdn", None)]


# -- the API -----------------------------------------------------------------------------------------


def test_the_api_lists_files_with_sizes_and_lfs_data(hub: FakeHub, cache: Path) -> None:
    weights = "unet/diffusion_pytorch_model.safetensors"

    info = huggingface_hub.model_info(PIPELINE_REPO, files_metadata=True)
    tree = list(HfApi().list_repo_tree(PIPELINE_REPO, recursive=True))
    paths = HfApi().get_paths_info(PIPELINE_REPO, ["unet", "model_index.json", "missing.json"])

    assert info.sha == hub.repos[PIPELINE_REPO].commit
    siblings = {sibling.rfilename: sibling for sibling in info.siblings or []}
    assert {name: sibling.size for name, sibling in siblings.items()} == {n: len(d) for n, d in PIPELINE_FILES.items()}
    lfs = siblings[weights].lfs
    assert lfs is not None and lfs.sha256 == sha256(PIPELINE_FILES[weights])
    assert siblings["model_index.json"].lfs is None
    files = {entry.path: entry for entry in tree if isinstance(entry, RepoFile)}
    assert set(files) == set(PIPELINE_FILES)
    assert {entry.path for entry in tree if isinstance(entry, RepoFolder)} == {
        "scheduler",
        "unet",
        "text_encoder",
        "tokenizer",
    }
    assert files[weights].size == len(PIPELINE_FILES[weights]) and files[weights].lfs is not None
    assert sorted(entry.path for entry in paths) == ["model_index.json", "unet"]


def test_the_hf_cli_in_a_subprocess_reaches_the_fake_hub_through_the_environment(
    hub: FakeHub, cache: Path, tmp_path: Path
) -> None:
    other_cache = tmp_path / "other-cache"
    hf = Path(sys.executable).with_name("hf")

    done = subprocess.run(
        [str(hf), "download", CHECKPOINT_REPO, CHECKPOINT, "--cache-dir", str(other_cache)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    found = try_to_load_from_cache(CHECKPOINT_REPO, CHECKPOINT, cache_dir=other_cache)
    assert isinstance(found, str) and _sha256_of(found) == sha256(CHECKPOINT_DATA)
