"""Where a local model's weights are, and which of them are missing.

:meth:`WeightsLocator.missing` answers from the disk alone (no network, no torch, not even huggingface_hub's
download module): availability is checked on the event loop on every ``list_providers``.
:meth:`WeightsLocator.locate` runs in the device's worker thread before a load and downloads what is missing
when ``FLUX_LOCAL_ALLOW_DOWNLOAD`` is on; otherwise ``imagegen-mcp pull`` (see :mod:`.pull`) fetches them
beforehand. huggingface_hub comes with the ``local`` extra, so it is imported only when a model names a
Hugging Face repository.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from imagegen_mcp.errors import AuthenticationError, ImageGenError, ProviderError, ProviderUnavailableError
from imagegen_mcp.providers.base import LoraSpec
from imagegen_mcp.providers.flux_local.config import FluxModelConfig, PipelineType

#: What diffusers itself fetches of a single-file checkpoint's base repository: configs and tokenizers.
CONFIG_PATTERNS = ("*.json", "*.txt")
#: The weights of a diffusers-format repository, single or sharded, without other precisions' variants.
WEIGHT_PATTERNS = (
    "*/diffusion_pytorch_model.safetensors",
    "*/diffusion_pytorch_model-*.safetensors",
    "*/model.safetensors",
    "*/model-*.safetensors",
)
_DIFFUSERS_WEIGHTS = (
    "diffusion_pytorch_model.safetensors",
    "diffusion_pytorch_model.safetensors.index.json",
    "diffusion_pytorch_model.bin",
)
_TRANSFORMERS_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
ALLOW_DOWNLOAD_STEP = "Or set FLUX_LOCAL_ALLOW_DOWNLOAD=true to let the server download what is missing on first use"


def required_files(pipeline: PipelineType, *, weights: bool) -> tuple[tuple[str, ...], ...]:
    """The files a diffusers-format folder of ``pipeline`` must hold; each entry lists alternatives.

    ``weights=False`` is what a single-file checkpoint needs of its base model: configs and tokenizers only.
    """
    suffixes = ("", "_2") if pipeline == "sdxl" else ("",)
    files: list[tuple[str, ...]] = [("model_index.json",), ("scheduler/scheduler_config.json",)]
    models = [("unet", _DIFFUSERS_WEIGHTS), ("vae", _DIFFUSERS_WEIGHTS)]
    models += [(f"text_encoder{suffix}", _TRANSFORMERS_WEIGHTS) for suffix in suffixes]
    for component, weight_files in models:
        files.append((f"{component}/config.json",))
        if weights:
            files.append(tuple(f"{component}/{name}" for name in weight_files))
    for suffix in suffixes:
        files += [(f"tokenizer{suffix}/{name}",) for name in ("tokenizer_config.json", "vocab.json", "merges.txt")]
    return tuple(files)


@dataclass(frozen=True)
class MissingWeights:
    reason: str
    steps: tuple[str, ...]


@dataclass(frozen=True)
class LocatedWeights:
    #: A diffusers-format folder: the whole pipeline, or the base model's configs for a checkpoint.
    folder: Path
    #: The single-file checkpoint, when the model is one.
    checkpoint: Path | None


@dataclass(frozen=True)
class HubFile:
    """A single-file checkpoint inside a Hugging Face repository."""

    description: str
    repo_id: str
    filename: str


@dataclass(frozen=True)
class HubRepo:
    """A diffusers-format folder that is a Hugging Face repository."""

    description: str
    repo_id: str
    #: What the folder must hold (relative paths, alternatives per entry).
    files: tuple[tuple[str, ...], ...]
    #: What to download of the repository.
    patterns: tuple[str, ...]


@dataclass(frozen=True)
class LocalPath:
    """A local single-file checkpoint (``files`` empty) or diffusers-format folder."""

    description: str
    path: Path
    files: tuple[tuple[str, ...], ...] = ()


#: One thing a model loads from.
Source = HubFile | HubRepo | LocalPath
HubSource = HubFile | HubRepo


class WeightsLocator:
    def __init__(self, cache_dir: Path | None, *, allow_download: bool) -> None:
        self.cache_dir = cache_dir
        self.allow_download = allow_download

    def missing(self, model: FluxModelConfig) -> MissingWeights | None:
        """What keeps ``model`` from loading offline, or ``None`` when everything is on the disk."""
        for source in sources(model):
            problem = self._missing(source, model.key)
            if problem is not None:
                return problem
        return None

    def locate(self, model: FluxModelConfig) -> LocatedWeights:
        """Local paths of everything ``model`` loads, downloading what is missing if that is allowed."""
        paths = [self._locate(source, model.key) for source in sources(model)]
        if model.is_single_file:
            checkpoint, folder = paths
            return LocatedWeights(folder=folder, checkpoint=checkpoint)
        return LocatedWeights(folder=paths[0], checkpoint=None)

    def lora_file(self, lora: LoraSpec) -> Path:
        """The local file of ``lora``: its path, or its file in the hub cache (downloaded if that is allowed)."""
        if lora.path is not None:
            return lora.path
        match = HUB_LORA.match(lora.model or "")
        if match is None:
            raise ProviderUnavailableError(f"{lora.label} is not 'org/repo/file.safetensors'")
        source = HubFile("the LoRA", match["repo"], match["file"])
        if self._cached(source.repo_id, (source.filename,)) is None and not self.allow_download:
            raise ProviderUnavailableError(
                f"The LoRA {lora.label} is not in the Hugging Face cache ({self.cache_path()}).",
                remediation=[f"Download it: {self._download_command(source)}", ALLOW_DOWNLOAD_STEP],
            )
        return self._locate(source, "the LoRA")

    # -- one source -----------------------------------------------------------------------------------

    def pull_command(self, key: str) -> str:
        """The command that downloads model ``key`` into this cache (which the shell may not have configured)."""
        words = ["imagegen-mcp", "pull", key]
        if self.cache_dir is not None:
            words.insert(0, f"FLUX_LOCAL_CACHE_DIR={shlex.quote(str(self.cache_dir))}")
        return " ".join(words)

    def _missing(self, source: Source, key: str) -> MissingWeights | None:
        match source:
            case LocalPath():
                return missing_local(source)
            case HubFile(repo_id=repo_id, filename=filename):
                absent = [] if self._cached(repo_id, (filename,)) else [filename]
            case HubRepo(repo_id=repo_id, files=files):
                absent = [names[0] for names in files if self._cached(repo_id, names) is None]
        if not absent:
            return None
        return MissingWeights(
            reason=f"the Hugging Face cache ({self.cache_path()}) lacks {summarise(absent)} of {repo_id} "
            f"({source.description})",
            steps=(
                f"Download it: {self.pull_command(key)}",
                f"Or download {source.description} with the Hugging Face CLI: {self._download_command(source)}",
                ALLOW_DOWNLOAD_STEP,
            ),
        )

    def _locate(self, source: Source, key: str) -> Path:
        problem = self._missing(source, key)
        if problem is not None:
            if isinstance(source, LocalPath) or not self.allow_download:
                raise ProviderUnavailableError(problem.reason, remediation=problem.steps)
            return self._download(source, key)
        match source:
            case LocalPath(path=path):
                return path
            case HubFile(repo_id=repo_id, filename=filename):
                found = self._cached(repo_id, (filename,))
            case HubRepo(repo_id=repo_id, files=files):
                # The folder is the snapshot holding the first required file (model_index.json).
                first = self._cached(repo_id, files[0])
                found = first.parent if first is not None else None
        if found is None:  # removed from the cache since it was checked a moment ago
            raise ProviderUnavailableError(f"{source.description} of {repo_id} vanished from the cache")
        return found

    def _cached(self, repo_id: str, alternatives: tuple[str, ...]) -> Path | None:
        """The first of ``alternatives`` that the cache holds at the repository's ``main`` revision.

        This reads the cache's documented layout as ``huggingface_hub.try_to_load_from_cache`` does
        (``models--org--name/refs/main`` names a commit, ``snapshots/<commit>/`` holds its files) without
        importing it: availability is checked on the event loop, and importing huggingface_hub's download
        module there takes about 100 ms, longer while a first generation imports diffusers (and with it that
        module) in a worker thread. A name that would leave the snapshot (absolute, or with ``..``) is not there.
        """
        repo = self.cache_path() / f"models--{repo_id.replace('/', '--')}"
        ref = repo / "refs" / "main"
        snapshot = repo / "snapshots" / (ref.read_text() if ref.is_file() else "main")
        for name in alternatives:
            parts = PurePosixPath(name).parts
            if parts and parts[0] != "/" and ".." not in parts and (snapshot / name).is_file():
                return snapshot / name
        return None

    def _download(self, source: HubSource, key: str) -> Path:
        from huggingface_hub import hf_hub_download, snapshot_download

        try:
            if isinstance(source, HubFile):
                return Path(hf_hub_download(source.repo_id, source.filename, cache_dir=self.cache_dir))
            return Path(
                snapshot_download(source.repo_id, allow_patterns=list(source.patterns), cache_dir=self.cache_dir)
            )
        except hub_failures() as exc:
            raise hub_error(exc, source, again=f"Or download it beforehand: {self.pull_command(key)}") from exc

    def _download_command(self, source: HubSource) -> str:
        words = ["hf", "download", source.repo_id]
        if isinstance(source, HubFile):
            words.append(source.filename)
        else:
            for pattern in source.patterns:
                words += ["--include", pattern]
        if self.cache_dir is not None:
            words += ["--cache-dir", str(self.cache_dir)]
        return shlex.join(words)

    def cache_path(self) -> Path:
        """The cache folder: ``FLUX_LOCAL_CACHE_DIR``, or huggingface_hub's (``HF_HUB_CACHE``, under ``HF_HOME``)."""
        if self.cache_dir is not None:
            return self.cache_dir
        from huggingface_hub.constants import HF_HUB_CACHE

        return Path(HF_HUB_CACHE)


def sources(model: FluxModelConfig) -> list[Source]:
    """What a model loads from: its diffusers-format folder, or its checkpoint and its base model's configs."""
    if not model.is_single_file:
        files = required_files(model.pipeline, weights=True)
        description = "the diffusers-format model"
        if model.path is not None:
            return [LocalPath(description, model.path, files)]
        assert model.repo_id is not None  # the config's validator guarantees exactly one source
        return [HubRepo(description, model.repo_id, files, CONFIG_PATTERNS + WEIGHT_PATTERNS)]
    checkpoint: Source
    if model.path is not None:
        checkpoint = LocalPath("the checkpoint", model.path)
    else:
        assert model.repo_id is not None and model.filename is not None
        checkpoint = HubFile("the checkpoint", model.repo_id, model.filename)
    description = "the base model's configs and tokenizers"
    base_files = required_files(model.pipeline, weights=False)
    if model.base_path is not None:
        return [checkpoint, LocalPath(description, model.base_path, base_files)]
    return [checkpoint, HubRepo(description, model.base_repo(), base_files, CONFIG_PATTERNS)]


def missing_local(source: LocalPath) -> MissingWeights | None:
    """What a local source lacks on the disk, or ``None``."""
    if not source.files:
        if source.path.is_file():
            return None
        return MissingWeights(
            reason=f"checkpoint {source.path} does not exist",
            steps=(f"Put the checkpoint at {source.path}, or point the model's path at where it is",),
        )
    absent = [names[0] for names in source.files if not any((source.path / name).is_file() for name in names)]
    if not absent:
        return None
    return MissingWeights(
        reason=f"{source.path} is not a complete diffusers-format folder: missing {summarise(absent)}",
        steps=(f"Save a pipeline to {source.path} with save_pretrained(), or point the model's path at such a folder",),
    )


def hub_failures() -> tuple[type[Exception], ...]:
    """What huggingface_hub raises when a download fails: the Hub's HTTP answers and the cache's errors (all
    ``OSError``), the network (httpx2's errors, raised as they are for a transfer cut short), a revision it
    could not resolve, and a repository id the Hub cannot have."""
    import httpx2
    from huggingface_hub.errors import HFValidationError, RevisionResolutionError

    return (OSError, httpx2.HTTPError, RevisionResolutionError, HFValidationError)


def hub_error(exc: Exception, source: HubSource, *, again: str) -> ImageGenError:
    """A failed download of ``source`` as an error a person can act on.

    A gated repository wants a token of an account that accepted its terms; a repository, revision or file
    the Hub does not have (or an invalid id) is the model's configuration to fix, so trying again will not
    help; anything else is the network or the Hub, and ``again`` says how to try again. huggingface_hub
    sometimes wraps the Hub's answer (a dry run's ``DryRunError``, a ``LocalEntryNotFoundError``), so the
    chain of causes is searched.
    """
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        GatedRepoError,
        HFValidationError,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    causes = list(_causes(exc))
    page = f"{constants.ENDPOINT}/{source.repo_id}"
    gated = next((cause for cause in causes if isinstance(cause, GatedRepoError)), None)
    if gated is not None:
        refused = " and the token sent has not been granted access" if gated.response.status_code == 403 else ""
        return AuthenticationError(
            f"{source.repo_id} ({source.description}) is a gated repository on Hugging Face: it downloads only "
            f"with the token of an account that accepted its terms{refused}",
            remediation=[
                f"Log in at {page} and accept the model's terms",
                "Set HF_TOKEN to an access token of that account (https://huggingface.co/settings/tokens) where "
                "the download runs, or run `hf auth login`",
                again,
            ],
        )
    if any(isinstance(cause, RepositoryNotFoundError) for cause in causes):
        return not_found_error(source, f"Hugging Face has no repository {source.repo_id} (or it is private)")
    if any(isinstance(cause, RevisionNotFoundError | RemoteEntryNotFoundError | HFValidationError) for cause in causes):
        return not_found_error(source, f"{source.repo_id} ({source.description}): {exc}")
    return ProviderError(
        f"Could not download {source.repo_id} ({source.description}): {type(exc).__name__}: {exc}",
        retryable=True,
        remediation=["Check the network connection and try again", again],
    )


def not_found_error(source: HubSource, reason: str) -> ProviderError:
    """The Hub lacks what ``source`` names: the model's configuration is wrong (or the repository is private)."""
    from huggingface_hub import constants

    names = "repo_id and filename" if isinstance(source, HubFile) else "repo_id"
    return ProviderError(
        reason,
        retryable=False,
        remediation=[
            f"Check the model's {names} against the repository's files at {constants.ENDPOINT}/{source.repo_id}",
            "For a private repository, set HF_TOKEN to an access token that can read it",
        ],
    )


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it was raised from, innermost last."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        yield cause
        cause = cause.__cause__ or cause.__context__


def summarise(names: list[str]) -> str:
    """The first three of ``names`` and how many more there are."""
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


#: A LoRA on the Hugging Face hub: ``org/repo/path/to/file.safetensors``.
HUB_LORA = re.compile(r"^(?P<repo>[\w.-]+/[\w.-]+)/(?P<file>[\w./-]+\.safetensors)$")


def lora_problem(lora: LoraSpec) -> str | None:
    """Why ``lora`` cannot be a local model's LoRA (cheap: a path that is not a file, an id of another form)."""
    if lora.path is not None:
        return None if lora.path.is_file() else "no such file"
    if lora.model is not None and not HUB_LORA.match(lora.model):
        return "a local model's LoRA is a path, or 'org/repo/file.safetensors' on Hugging Face"
    return None
