"""The command-line subcommands a person uses to check a setup."""

from __future__ import annotations

import argparse
import json
import os
import pty
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from imagegen_mcp import __version__
from tests.e2e import INITIALIZE, REPO, clean_environ, write_palette_plugin


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
    assert "A plain `imagegen-mcp generate` now uses: none" in done.stdout


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


def test_every_option_of_every_command_has_help() -> None:
    from imagegen_mcp.cli import _parser

    parser = _parser()
    subparsers = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    parsers = [parser, *subparsers[0].choices.values()]
    assert {"serve", "providers", "models", "generate"} <= set(subparsers[0].choices)
    for command in parsers:
        for action in command._actions:
            assert action.help and action.help != argparse.SUPPRESS, (command.prog, action.dest)


def test_version_flags(tmp_path: Path) -> None:
    for flag in ("-V", "--version"):
        done = run(tmp_path, flag)
        assert done.returncode == 0 and done.stdout.strip() == f"imagegen-mcp {__version__}"


def test_errors_name_commands_flags_and_variables_not_tools(tmp_path: Path) -> None:
    unknown = run(tmp_path, "generate", "a lighthouse", "--model", "foo")
    assert unknown.returncode == 1
    assert "model_not_found" in unknown.stderr and "Run `imagegen-mcp models`" in unknown.stderr
    narrow = run(tmp_path, "generate", "a lighthouse", "--width", "5")
    assert "--width: Input should be greater than or equal to 64" in narrow.stderr
    assert "`imagegen-mcp generate --help` lists every option" in narrow.stderr
    for done in (unknown, narrow, run(tmp_path, "generate", "a lighthouse"), run(tmp_path, "providers")):
        text = done.stdout + done.stderr
        assert not any(tool in text for tool in ("list_models", "list_providers", "generate_image", "input schema"))
        assert " INFO " not in text and "WARNING" not in text  # no log lines without -v
    verbose = run(tmp_path, "-v", "generate", "a lighthouse")
    assert " INFO imagegen_mcp.service: skipping runware:juggernaut_pro" in verbose.stderr


def test_on_a_terminal_the_server_says_what_it_is_and_how_to_try_it(tmp_path: Path) -> None:
    leader, follower = pty.openpty()
    env = clean_environ(IMAGEGEN_OUTPUT_DIR=str(tmp_path / "out"))
    process = subprocess.Popen(
        [sys.executable, "-m", "imagegen_mcp"], stdin=follower, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    os.close(follower)
    try:
        line = process.stderr.readline().decode() if process.stderr else ""
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=10)
        os.close(leader)
    assert line.startswith("imagegen-mcp: MCP server on stdio, waiting for a client")
    assert "Ctrl-C stops it" in line and "imagegen-mcp providers" in line


@pytest.mark.parametrize("transport", ["stdio", "streamable-http", "sse"])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_the_server_within_a_second_without_a_traceback(
    tmp_path: Path, transport: str, signum: int
) -> None:
    port = free_port()
    env = clean_environ(IMAGEGEN_OUTPUT_DIR=str(tmp_path / "out"))
    args = ["--transport", transport, "--port", str(port)]
    process = subprocess.Popen(
        [sys.executable, "-m", "imagegen_mcp", *args],
        stdin=subprocess.PIPE,  # held open: a stdio client that is still connected
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        wait_until_serving(process, transport, port)
        sent = time.perf_counter()
        process.send_signal(signum)
        process.wait(timeout=10)
        stopped_after = time.perf_counter() - sent
    finally:
        process.kill()
        process.wait()
    stderr = process.stderr.read().decode() if process.stderr else ""
    assert stopped_after < 1.0, stderr
    assert "Traceback" not in stderr and "Error" not in stderr, stderr


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_until_serving(process: subprocess.Popen[bytes], transport: str, port: int) -> None:
    """Until the server answers: an initialize over stdio, or a TCP connection for HTTP."""
    deadline = time.monotonic() + 30
    if transport == "stdio":
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write((json.dumps(INITIALIZE) + "\n").encode())
        process.stdin.flush()
        assert json.loads(process.stdout.readline())["id"] == INITIALIZE["id"]
        return
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("the server did not start listening")
