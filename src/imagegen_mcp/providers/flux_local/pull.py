"""Downloading a local model's weights before it runs: what ``imagegen-mcp pull MODEL`` does.

The server downloads nothing unless ``FLUX_LOCAL_ALLOW_DOWNLOAD`` is on. A pull fetches what a model lacks of
its Hugging Face sources (a checkpoint or a diffusers-format repository, and a checkpoint's base configs) into
the cache the provider reads, so a running server finds the model on its next availability check. Each
source is listed first, at the commit ``main`` points to, and the listing must hold every file the model
needs before anything is downloaded. A dry run stops there and writes nothing: huggingface_hub's snapshot
dry run would record ``refs/main``, which a commit passed as a ``ResolvedRevision`` skips.

An interrupted pull relies on huggingface_hub 2.4 to leave a sound cache. It writes each file under a
temporary name and moves it into the cache only once complete, so the cache never holds part of a file.
Within one run it retries a connection lost mid-file, resuming after the last 10 MiB piece written, until
five retries in a row bring no data. A file whose download failed is deleted, so the next pull fetches it
again from its start and skips every file that completed. A process killed outright leaves its temporary
``<blob>.<random>.incomplete`` file behind, which nothing reads. Ctrl-C stops the pull once the files on
their way (huggingface_hub downloads up to eight at a time, in threads) have finished.
"""

from __future__ import annotations

import contextlib
import glob
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imagegen_mcp.errors import ModelNotFoundError, ProviderNotFoundError, ProviderUnavailableError
from imagegen_mcp.providers.base import ImageProvider, missing_modules
from imagegen_mcp.providers.flux_local.config import FluxModelConfig
from imagegen_mcp.providers.flux_local.provider import FluxLocalProvider
from imagegen_mcp.providers.flux_local.weights import (
    HubFile,
    HubSource,
    LocalPath,
    WeightsLocator,
    hub_error,
    hub_failures,
    missing_local,
    not_found_error,
    sources,
    summarise,
)

if TYPE_CHECKING:
    from huggingface_hub import DryRunFileInfo, ResolvedRevision

PROVIDER = FluxLocalProvider.info.name
MODELS_STEP = "Run `imagegen-mcp models --provider flux_local` to see the local models and their keys"


@dataclass(frozen=True)
class PulledFile:
    filename: str
    #: Bytes, when the Hub says.
    size: int | None
    #: In the cache before this pull: nothing to fetch.
    cached: bool


@dataclass(frozen=True)
class PulledSource:
    """One Hugging Face source of a model and its files that the pull wants."""

    description: str
    repo_id: str
    #: The cache's snapshot folder of the commit pulled.
    folder: Path
    files: tuple[PulledFile, ...]


@dataclass(frozen=True)
class Pull:
    """What a pull fetched (a dry run: would fetch) for one model."""

    model: FluxModelConfig
    dry_run: bool
    cache: Path
    hub: tuple[PulledSource, ...]
    #: Sources on this machine's disk: a pull leaves them alone.
    local: tuple[LocalPath, ...]

    @property
    def fetched(self) -> list[tuple[PulledSource, PulledFile]]:
        return [(source, file) for source in self.hub for file in source.files if not file.cached]

    @property
    def fetched_bytes(self) -> int:
        return sum(file.size or 0 for _, file in self.fetched)

    @property
    def cached_files(self) -> int:
        return sum(file.cached for source in self.hub for file in source.files)


def pull_model(providers: Mapping[str, ImageProvider[Any]], name: str, *, dry_run: bool = False) -> Pull:
    """Pull the model ``name`` names (``key`` or ``flux_local:key``) with the flux_local provider of
    ``providers``: its models, user-configured ones included, and its cache."""
    provider = providers.get(PROVIDER)
    if not isinstance(provider, FluxLocalProvider):
        raise ProviderNotFoundError("the flux_local provider is not registered", remediation=["Reinstall imagegen-mcp"])
    return pull(find_model(provider.models, name), provider.weights, dry_run=dry_run)


def find_model(models: Mapping[str, FluxModelConfig], name: str) -> FluxModelConfig:
    """The model ``name`` names: a flux_local model key, or its id ``flux_local:key``."""
    provider, _, key = name.rpartition(":")
    if provider not in ("", PROVIDER):
        raise ModelNotFoundError(
            f"{name} is not a local model: pull downloads the weights of flux_local models only",
            remediation=[MODELS_STEP],
        )
    model = models.get(key)
    if model is None:
        raise ModelNotFoundError(f"flux_local has no model {key!r}", remediation=[MODELS_STEP])
    return model


def pull(model: FluxModelConfig, locator: WeightsLocator, *, dry_run: bool = False) -> Pull:
    """Fetch into ``locator``'s cache what ``model`` lacks of its Hugging Face sources (``dry_run``: only
    find out what that is, writing nothing). Raises an ``ImageGenError`` with the steps that fix it."""
    if missing_modules("huggingface_hub"):
        raise ProviderUnavailableError(
            "huggingface_hub is not installed",
            remediation=["Install the local extra: pip install 'imagegen-mcp[local]'"],
        )
    model_sources = sources(model)
    local = tuple(source for source in model_sources if isinstance(source, LocalPath))
    for source in local:
        problem = missing_local(source)
        if problem is not None:
            raise ProviderUnavailableError(
                f"{model.key} loads {source.description} from this machine, and {problem.reason}: "
                "there is nothing a pull can fetch for it",
                remediation=problem.steps,
            )
    hub = [source for source in model_sources if not isinstance(source, LocalPath)]
    if hub:
        _require_online(locator.pull_command(model.key))
    pulled = tuple(_pull_source(source, locator, model.key, dry_run=dry_run) for source in hub)
    if not dry_run:
        problem = locator.missing(model)
        if problem is not None:  # the listing promised every file: the cache must now hold them
            raise ProviderUnavailableError(f"the pull finished, yet {problem.reason}", remediation=problem.steps)
    return Pull(model=model, dry_run=dry_run, cache=locator.cache_path(), hub=pulled, local=local)


def _require_online(command: str) -> None:
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        raise ProviderUnavailableError(
            "HF_HUB_OFFLINE is set, so huggingface_hub makes no network requests",
            remediation=[f"Run the pull without it: HF_HUB_OFFLINE=0 {command}"],
        )


def _pull_source(source: HubSource, locator: WeightsLocator, key: str, *, dry_run: bool) -> PulledSource:
    from huggingface_hub import snapshot_download
    from huggingface_hub.file_download import repo_folder_name

    patterns, needed = _wanted(source)
    cache_dir = locator.cache_dir
    try:
        revision = _revision(source.repo_id, cache_dir, dry_run=dry_run)
        with _quiet_listing():
            listed = snapshot_download(
                source.repo_id, revision=revision, allow_patterns=patterns, cache_dir=cache_dir, dry_run=True
            )
        _check_listing(source, needed, listed)
        if not dry_run and any(info.will_download for info in listed):
            snapshot_download(source.repo_id, revision=revision, allow_patterns=patterns, cache_dir=cache_dir)
    except hub_failures() as exc:
        kept = " --dry-run" if dry_run else " (files that completed are kept)"
        again = f"Then run it again: {locator.pull_command(key)}{kept}"
        raise hub_error(exc, source, again=again) from exc
    folder = locator.cache_path() / repo_folder_name(repo_id=source.repo_id, repo_type="model")
    return PulledSource(
        description=source.description,
        repo_id=source.repo_id,
        folder=folder / "snapshots" / revision.resolved,
        files=tuple(
            PulledFile(info.filename, info.file_size, info.is_cached)
            for info in sorted(listed, key=lambda info: info.filename)
        ),
    )


@contextlib.contextmanager
def _quiet_listing() -> Iterator[None]:
    """No progress bars while listing (the download's are the ones to show), and no warning that a pattern
    matched nothing: :func:`_check_listing` reports a missing file as the error it is."""
    from huggingface_hub.utils.tqdm import disable_progress_bars

    logger = logging.getLogger("huggingface_hub._snapshot_download")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with disable_progress_bars():
            yield
    finally:
        logger.setLevel(level)


def _wanted(source: HubSource) -> tuple[list[str], tuple[tuple[str, ...], ...]]:
    """What to download of ``source`` (patterns) and the files the model needs of it (alternatives each)."""
    if isinstance(source, HubFile):
        # snapshot_download's patterns are fnmatch globs: the escaped name matches the checkpoint alone.
        return [glob.escape(source.filename)], ((source.filename,),)
    return list(source.patterns), source.files


def _revision(repo_id: str, cache_dir: Path | None, *, dry_run: bool) -> ResolvedRevision:
    """The commit ``main`` points to. A pull records it in the cache (``refs/main``, which the provider's
    lookups read); a dry run leaves the cache alone."""
    from huggingface_hub import HfApi, ResolvedRevision

    api = HfApi()
    if not dry_run:
        return api.resolve_revision(repo_id, cache_dir=cache_dir)
    sha = api.repo_info(repo_id).sha
    assert sha is not None, "the Hub names the commit of every revision it answers for"
    return ResolvedRevision(sha, repo_id=repo_id)


def _check_listing(source: HubSource, needed: tuple[tuple[str, ...], ...], listed: list[DryRunFileInfo]) -> None:
    present = {info.filename for info in listed}
    absent = [alternatives[0] for alternatives in needed if present.isdisjoint(alternatives)]
    if absent:
        raise not_found_error(source, f"{source.repo_id} has no {summarise(absent)} ({source.description})")
