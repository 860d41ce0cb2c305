"""The Node MCP clients of the test suite: the TypeScript SDK, the MCP Inspector and the conformance suite.

``tests/clients`` is a small Node project. Its dependencies are installed with ``npm ci`` from its lock file
into ``$XDG_CACHE_HOME/imagegen-mcp-tests/node-<lock digest>`` (``~/.cache`` by default), outside the
repository, so every checkout and test run on a machine shares one install and a changed lock file gets a
new one. ``npm ci`` runs in a fresh temporary folder that is renamed into place once complete: an
interrupted install leaves nothing that looks finished, and of two processes installing at once the first
rename wins and the other discards its copy.

``python -m tests.node_clients`` installs if needed and prints the install folder (for scripts).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e import REPO

PROJECT = REPO / "tests" / "clients"
PROJECT_FILES = ("package.json", "package-lock.json")
INSTALL_TIMEOUT_S = 600


@dataclass(frozen=True)
class NodeClients:
    """A complete install of ``tests/clients``'s dependencies."""

    root: Path

    @property
    def node_modules(self) -> Path:
        return self.root / "node_modules"

    def bin(self, name: str) -> Path:
        """An installed package's executable, as ``npx <package>`` would run it."""
        return self.node_modules / ".bin" / name

    def environ(self, base: Mapping[str, str]) -> dict[str, str]:
        """``base`` plus ``NODE_PATH``, through which the scripts of ``tests/clients`` load the install."""
        return {**base, "NODE_PATH": str(self.node_modules)}


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "imagegen-mcp-tests"


def lock_digest() -> str:
    return hashlib.sha256((PROJECT / "package-lock.json").read_bytes()).hexdigest()[:16]


def install(npm: str) -> NodeClients:
    """Install the dependencies unless a complete install for this lock file is already there."""
    clients = NodeClients(cache_root() / f"node-{lock_digest()}")
    if clients.node_modules.is_dir():
        return clients
    clients.root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{clients.root.name}.", dir=clients.root.parent))
    try:
        for name in PROJECT_FILES:
            shutil.copy2(PROJECT / name, staging / name)
        # No package here needs an install script (the Inspector's only one is a no-op as a dependency).
        done = subprocess.run(
            [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=staging,
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT_S,
        )
        if done.returncode != 0:
            raise RuntimeError(f"npm ci failed in {staging}:\n{done.stdout}\n{done.stderr}")
        try:
            staging.rename(clients.root)
        except OSError:
            if not clients.node_modules.is_dir():  # not a lost race: something else is in the way
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already after a successful rename
    return clients


@functools.cache
def _installed(npm: str) -> NodeClients:
    return install(npm)


def node_clients() -> NodeClients:
    """The install, made on first use; skips the calling test when Node.js or npm is missing."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("the third-party MCP client tests need Node.js 20 or later with npm on PATH")
    return _installed(npm)


def run(
    command: Sequence[str | Path],
    *,
    env: Mapping[str, str],
    timeout_s: float,
    input: str | None = None,
    cwd: Path = REPO,
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` to its end or kill it, and everything it started, after ``timeout_s``.

    It runs in a session of its own, so a timeout also ends the MCP servers a client started.
    """
    args = [str(part) for part in command]
    with subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL if input is None else subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(env),
        cwd=cwd,
        start_new_session=True,
    ) as process:
        try:
            stdout, stderr = process.communicate(input, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_session(process.pid)
            stdout, stderr = process.communicate()
            raise AssertionError(f"{' '.join(args)} ran past {timeout_s} s\n{stdout}\n{stderr}") from None
        finally:
            _kill_session(process.pid)  # whatever outlived the command, such as a server it did not stop
    return subprocess.CompletedProcess(args, process.returncode, stdout, stderr)


def _kill_session(leader: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(leader, signal.SIGKILL)


if __name__ == "__main__":
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("npm not found on PATH: install Node.js 20 or later")
    print(install(npm).root)
