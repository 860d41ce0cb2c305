"""The README's commands work to the letter for a newcomer: its ``bash`` blocks, pasted in order into a fresh
copy of the repository with a new virtual environment and no key.

Blocks fenced as ``bash`` are the ones that need nothing but this machine; blocks that need a key, another
program (``claude``, ``uvx``), a download of model weights or the whole test suite are fenced as ``shell``.
Standard input is empty, as for a command pasted after the server has been stopped: the stdio server of the
quick start then starts, finds the end of its input and exits.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e import REPO, clean_environ

pytestmark = pytest.mark.slow

README = REPO / "README.md"
BLOCK = re.compile(r"^```(?P<kind>\w*)\n(?P<body>.*?)^```", re.MULTILINE | re.DOTALL)


def blocks(kind: str) -> list[str]:
    return [match["body"] for match in BLOCK.finditer(README.read_text(encoding="utf-8")) if match["kind"] == kind]


def fresh_copy(destination: Path) -> Path:
    """The files of the repository (tracked, and new ones git does not ignore), as a clone would have them."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return destination


def test_the_readme_marks_its_blocks() -> None:
    runnable = blocks("bash")
    assert any("python3 -m venv .venv" in block for block in runnable)
    assert not any("scripts/test.sh" in block for block in runnable), "the test suite would run itself"
    assert not any(re.search(r"_KEY=\S", block) for block in runnable), "a block that needs a key"


def test_the_readme_commands_work_in_order_in_a_fresh_clone(tmp_path: Path) -> None:
    clone = fresh_copy(tmp_path / "imagegen-mcp")
    script = "set -euo pipefail\n" + "\n".join(blocks("bash"))
    environ = clean_environ(IMAGEGEN_OUTPUT_DIR=str(tmp_path / "images"), PYTHON=sys.executable)
    environ.pop("VIRTUAL_ENV", None)
    environ["PATH"] = ":".join(part for part in environ["PATH"].split(":") if ".venv" not in part)
    done = subprocess.run(
        ["bash", "-c", script],
        cwd=clone,
        env=environ,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout[-4000:]}\nstderr:\n{done.stderr[-4000:]}"
    assert "runware (Runware): unavailable: RUNWARE_API_KEY is not set" in done.stdout  # imagegen-mcp providers
    assert "runware:juggernaut_pro [default]" in done.stdout  # imagegen-mcp models
    assert "== generate_image" in done.stdout and "no_provider_available" in done.stdout  # examples/client.py
    assert (clone / ".venv" / "bin" / "imagegen-mcp").is_file()
