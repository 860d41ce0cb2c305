"""The command-line subcommands a person uses to check a setup."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.e2e import REPO, clean_environ, write_palette_plugin


def run(tmp_path: Path, *args: str, **environ: str) -> subprocess.CompletedProcess[str]:
    env = clean_environ(IMAGEGEN_OUTPUT_DIR=str(tmp_path / "out"), **environ)
    return subprocess.run(
        [sys.executable, "-m", "imagegen_mcp", *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=60
    )


def test_providers_table_explains_what_is_missing(tmp_path: Path) -> None:
    done = run(tmp_path, "providers")
    assert done.returncode == 0
    assert "runware (Runware): unavailable: RUNWARE_API_KEY is not set" in done.stdout
    assert "fix: Create an API key" in done.stdout
    assert "A plain generate_image now uses: none" in done.stdout


def test_models_table(tmp_path: Path) -> None:
    done = run(tmp_path, "models", "--provider", "runware")
    assert done.returncode == 0
    assert "runware:juggernaut_pro [default]" in done.stdout
    assert "flux_local" not in done.stdout
    unknown = run(tmp_path, "models", "--provider", "nope")
    assert unknown.returncode == 1 and "provider_not_found" in unknown.stderr


def test_generate_prints_where_the_file_went(tmp_path: Path) -> None:
    plugin = write_palette_plugin(tmp_path / "plugin")
    done = run(
        tmp_path,
        "generate",
        "a red square",
        "--seed",
        "5",
        "--count",
        "2",
        PYTHONPATH=plugin,
        IMAGEGEN_DEFAULT_PROVIDER="palette",
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 2
    paths = [Path(line.split("\t")[0]) for line in lines]
    assert all(path.is_file() and path.parent == tmp_path / "out" for path in paths)
    assert "seed=5" in lines[0] and "seed=6" in lines[1]


def test_generate_failure_is_explained(tmp_path: Path) -> None:
    done = run(tmp_path, "generate", "x", "--count", "9")
    assert done.returncode == 1
    assert "invalid_request" in done.stderr and "count" in done.stderr
    done = run(tmp_path, "generate", "x")
    assert done.returncode == 1
    assert "no_provider_available" in done.stderr and "RUNWARE_API_KEY" in done.stderr
