"""imagegen-mcp's command line with test models as flux_local's catalog:
``python -m tests.fakes.tiny_flux_cli MODELS.json [imagegen-mcp arguments...]``.

MODELS.json is a list of flux_local model configs (:func:`write_models`); the first is the default model.
Everything else is the real command (``pull``, ``models``, ``serve``, ...): settings from the environment and
the real flux_local provider, only its built-in models replaced. Run as a subprocess, it gives
huggingface_hub the environment a test sets (``HF_ENDPOINT`` and the rest are read when it is imported).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from imagegen_mcp.cli import main
from imagegen_mcp.providers.flux_local import FluxLocalProvider
from imagegen_mcp.providers.flux_local.config import FluxModelConfig


def write_models(path: Path, models: Sequence[FluxModelConfig]) -> Path:
    path.write_text(json.dumps([model.model_dump(mode="json") for model in models]), encoding="utf-8")
    return path


def read_models(path: Path) -> list[FluxModelConfig]:
    return [FluxModelConfig.model_validate(entry) for entry in json.loads(path.read_text(encoding="utf-8"))]


def provider_type(models: Sequence[FluxModelConfig]) -> type[FluxLocalProvider]:
    """The flux_local provider with ``models`` as its built-in models."""

    class TestFluxLocalProvider(FluxLocalProvider):
        info = dataclasses.replace(FluxLocalProvider.info, default_model=models[0].key)

        def builtin_models(self) -> Sequence[FluxModelConfig]:
            return models

    return TestFluxLocalProvider


if __name__ == "__main__":
    models_file, *arguments = sys.argv[1:]
    sys.exit(main(arguments, providers=[provider_type(read_models(Path(models_file)))]))
