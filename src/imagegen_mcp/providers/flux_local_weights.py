"""Where a local model's weights are, and which of them are missing.

:meth:`WeightsLocator.missing` answers from the disk alone (no network, no torch): availability is checked on
every ``list_providers``. :meth:`WeightsLocator.locate` runs in the device's worker thread before a load and
downloads what is missing when ``FLUX_LOCAL_ALLOW_DOWNLOAD`` is on. huggingface_hub comes with the ``local``
extra, so it is imported only when a model names a Hugging Face repository.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from imagegen_mcp.errors import ProviderError, ProviderUnavailableError

if TYPE_CHECKING:
    from imagegen_mcp.providers.flux_local import FluxModelConfig, PipelineType

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


def required_files(pipeline: PipelineType, *, weights: bool) -> list[tuple[str, ...]]:
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
    return files


@dataclass(frozen=True)
class MissingWeights:
    reason: str
    steps: list[str]


@dataclass(frozen=True)
class LocatedWeights:
    #: A diffusers-format folder: the whole pipeline, or the base model's configs for a checkpoint.
    folder: Path
    #: The single-file checkpoint, when the model is one.
    checkpoint: Path | None


@dataclass(frozen=True)
class _Part:
    """One thing a model loads from: its single-file checkpoint, or a diffusers-format folder."""

    description: str
    repo_id: str | None
    path: Path | None
    #: A checkpoint's file name inside ``repo_id``.
    filename: str | None = None
    #: What a folder must hold (relative paths, alternatives per entry); empty for a checkpoint.
    files: list[tuple[str, ...]] = field(default_factory=list)
    #: What to download of a folder's repository.
    patterns: tuple[str, ...] = ()

    @property
    def is_checkpoint(self) -> bool:
        return not self.files

    def required(self) -> list[tuple[str, ...]]:
        """The files that must be in the repository's cache for this part."""
        return [(self.filename,)] if self.filename is not None else self.files


class WeightsLocator:
    def __init__(self, cache_dir: Path | None, *, allow_download: bool) -> None:
        self.cache_dir = cache_dir
        self.allow_download = allow_download

    def missing(self, model: FluxModelConfig) -> MissingWeights | None:
        """What keeps ``model`` from loading offline, or ``None`` when everything is on the disk."""
        for part in _parts(model):
            problem = self._missing(part)
            if problem is not None:
                return problem
        return None

    def locate(self, model: FluxModelConfig) -> LocatedWeights:
        """Local paths of everything ``model`` loads, downloading what is missing if that is allowed."""
        paths = [self._locate(part) for part in _parts(model)]
        if model.is_single_file:
            checkpoint, folder = paths
            return LocatedWeights(folder=folder, checkpoint=checkpoint)
        return LocatedWeights(folder=paths[0], checkpoint=None)

    # -- one part -------------------------------------------------------------------------------------

    def _missing(self, part: _Part) -> MissingWeights | None:
        if part.path is not None:
            return _missing_local(part)
        assert part.repo_id is not None
        absent = [files[0] for files in part.required() if self._cached(part.repo_id, files) is None]
        if not absent:
            return None
        return MissingWeights(
            reason=f"the Hugging Face cache ({self._cache_name()}) lacks {_summarise(absent)} of {part.repo_id} "
            f"({part.description})",
            steps=[f"Download {part.description}: {self._download_command(part)}", ALLOW_DOWNLOAD_STEP],
        )

    def _locate(self, part: _Part) -> Path:
        if part.path is not None:
            problem = _missing_local(part)
            if problem is not None:
                raise ProviderUnavailableError(problem.reason, remediation=problem.steps)
            return part.path
        assert part.repo_id is not None
        problem = self._missing(part)
        if problem is None:
            first = self._cached(part.repo_id, part.required()[0])
            assert first is not None
            # A checkpoint is the file; a folder is the snapshot holding model_index.json.
            return first if part.is_checkpoint else first.parent
        if not self.allow_download:
            raise ProviderUnavailableError(problem.reason, remediation=problem.steps)
        return self._download(part)

    def _cached(self, repo_id: str, alternatives: tuple[str, ...]) -> Path | None:
        from huggingface_hub import try_to_load_from_cache

        for name in alternatives:
            found = try_to_load_from_cache(repo_id, name, cache_dir=self.cache_dir)
            if isinstance(found, str):
                return Path(found)
        return None

    def _download(self, part: _Part) -> Path:
        from huggingface_hub import hf_hub_download, snapshot_download

        assert part.repo_id is not None
        try:
            if part.is_checkpoint:
                assert part.filename is not None
                return Path(hf_hub_download(part.repo_id, part.filename, cache_dir=self.cache_dir))
            return Path(snapshot_download(part.repo_id, allow_patterns=list(part.patterns), cache_dir=self.cache_dir))
        except Exception as exc:
            raise ProviderError(
                f"Could not download {part.repo_id} ({part.description}): {type(exc).__name__}: {exc}",
                retryable=True,
                remediation=[
                    "Check the network connection and try again",
                    f"Or download it beforehand: {self._download_command(part)}",
                ],
            ) from exc

    def _download_command(self, part: _Part) -> str:
        assert part.repo_id is not None
        words = ["hf", "download", part.repo_id]
        if part.filename is not None:
            words.append(part.filename)
        for pattern in part.patterns:
            words += ["--include", pattern]
        if self.cache_dir is not None:
            words += ["--cache-dir", str(self.cache_dir)]
        return shlex.join(words)

    def _cache_name(self) -> str:
        if self.cache_dir is not None:
            return str(self.cache_dir)
        from huggingface_hub.constants import HF_HUB_CACHE

        return str(HF_HUB_CACHE)


def _parts(model: FluxModelConfig) -> list[_Part]:
    """The checkpoint (for a single-file model) and the diffusers-format folder a model loads from."""
    if not model.is_single_file:
        return [
            _Part(
                "the diffusers-format model",
                model.repo_id,
                model.path,
                files=required_files(model.pipeline, weights=True),
                patterns=CONFIG_PATTERNS + WEIGHT_PATTERNS,
            )
        ]
    checkpoint = _Part("the checkpoint", model.repo_id, model.path, filename=model.filename)
    base = _Part(
        "the base model's configs and tokenizers",
        model.base_repo() if model.base_path is None else None,
        model.base_path,
        files=required_files(model.pipeline, weights=False),
        patterns=CONFIG_PATTERNS,
    )
    return [checkpoint, base]


def _missing_local(part: _Part) -> MissingWeights | None:
    assert part.path is not None
    if part.is_checkpoint:
        if part.path.is_file():
            return None
        return MissingWeights(
            reason=f"checkpoint {part.path} does not exist",
            steps=[f"Put the checkpoint at {part.path}, or point the model's path at where it is"],
        )
    absent = [files[0] for files in part.files if not any((part.path / name).is_file() for name in files)]
    if not absent:
        return None
    return MissingWeights(
        reason=f"{part.path} is not a complete diffusers-format folder: missing {_summarise(absent)}",
        steps=[f"Save a pipeline to {part.path} with save_pretrained(), or point the model's path at such a folder"],
    )


def _summarise(names: list[str]) -> str:
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
