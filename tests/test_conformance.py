"""The official MCP conformance suite's server scenarios against the server over streamable HTTP.

``scripts/conformance.sh`` starts ``python -m imagegen_mcp serve --transport streamable-http`` on a loopback
port and runs the suite (``@modelcontextprotocol/conformance``). Most of the suite's server scenarios call
tools, resources and prompts that only its reference server has (``test_simple_text``,
``test://static-text``, ``test_simple_prompt``...); the others hold for any server, and those must pass.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import REPO, clean_environ
from tests.node_clients import PROJECT, node_clients, run

pytestmark = pytest.mark.slow

#: Scenarios that hold for any server, and why they apply to this one.
APPLICABLE = {
    "server-initialize": "every server: the initialize handshake",
    "ping": "every server: ping answers {}",
    "tools-list": "every server with tools: each has a name, a description and an input schema",
    "resources-list": "every server that declares resources, as this one does",
    "prompts-list": "every server that declares prompts (this one has create_image)",
    "logging-set-level": "every server that declares logging, as this one does for logging/setLevel",
    "completion-complete": "every server that declares completions: a well-formed answer (empty for a prompt of "
    "the reference server's, which this one does not have)",
    "server-sse-multiple-streams": "every streamable-HTTP server with sessions: concurrent POST streams",
    "dns-rebinding-protection": "every loopback server without TLS or a token, as this one runs by default",
}

_REFERENCE_TOOL = "calls a test tool that only the suite's reference server has"
#: Scenarios that need the reference server's test fixtures or a capability this server does not offer.
NOT_APPLICABLE = {
    "tools-call-simple-text": _REFERENCE_TOOL + " (it passes vacuously on an 'Unknown tool' error text)",
    "tools-call-image": _REFERENCE_TOOL,
    "tools-call-audio": _REFERENCE_TOOL,
    "tools-call-embedded-resource": _REFERENCE_TOOL,
    "tools-call-mixed-content": _REFERENCE_TOOL,
    "tools-call-with-logging": _REFERENCE_TOOL,
    "tools-call-error": _REFERENCE_TOOL + " (it passes vacuously on the 'Unknown tool' error)",
    "tools-call-with-progress": _REFERENCE_TOOL,
    "tools-call-sampling": _REFERENCE_TOOL,
    "tools-call-elicitation": _REFERENCE_TOOL,
    "json-schema-2020-12": _REFERENCE_TOOL,
    "elicitation-sep1034-defaults": _REFERENCE_TOOL,
    "elicitation-sep1330-enums": _REFERENCE_TOOL,
    "server-sse-polling": _REFERENCE_TOOL + " (test_reconnection, which closes its stream mid-call)",
    "resources-read-text": "reads the reference server's test://static-text",
    "resources-read-binary": "reads the reference server's test://static-binary",
    "resources-templates-read": "reads the reference server's test://template/{id}/data",
    "resources-subscribe": "subscribes to the reference server's test://watched-resource",
    "resources-unsubscribe": "unsubscribes from the reference server's test://watched-resource",
    "prompts-get-simple": "gets the reference server's prompt test_simple_prompt",
    "prompts-get-with-args": "gets the reference server's prompt test_prompt_with_arguments",
    "prompts-get-embedded-resource": "gets the reference server's prompt test_prompt_with_embedded_resource",
    "prompts-get-with-image": "gets the reference server's prompt test_prompt_with_image",
}

SUITE_TIMEOUT_S = 300
#: A result folder: server-<scenario>-<timestamp with ':' and '.' as '-'>.
RESULT_DIR = re.compile(r"server-(?P<scenario>.+)-\d{4}-\d{2}-\d{2}T[\d-]+Z")
PASSING = {"SUCCESS", "INFO"}


@dataclass(frozen=True)
class SuiteRun:
    checks: dict[str, list[dict[str, Any]]]
    done: subprocess.CompletedProcess[str]


def read_results(folder: Path) -> dict[str, list[dict[str, Any]]]:
    checks: dict[str, list[dict[str, Any]]] = {}
    for path in folder.glob("server-*/checks.json"):
        match = RESULT_DIR.fullmatch(path.parent.name)
        assert match, path
        checks[match["scenario"]] = json.loads(path.read_text())
    return checks


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> SuiteRun:
    node_clients()  # installs, or skips without Node.js
    results = tmp_path_factory.mktemp("conformance")
    env = clean_environ(PYTHON=sys.executable, CONFORMANCE_RESULTS=str(results))
    done = run(["bash", REPO / "scripts" / "conformance.sh", *APPLICABLE], env=env, timeout_s=SUITE_TIMEOUT_S)
    return SuiteRun(read_results(results), done)


def test_every_server_scenario_of_the_suite_is_classified() -> None:
    conformance = node_clients().bin("conformance")
    done = run(
        ["node", "--import", PROJECT / "node20.mjs", conformance, "list", "--server"], env=clean_environ(), timeout_s=60
    )
    assert done.returncode == 0, done.stderr
    listed = set(re.findall(r"^\s+- (\S+)", done.stdout, flags=re.MULTILINE))
    assert listed == set(APPLICABLE) | set(NOT_APPLICABLE)


@pytest.mark.parametrize("scenario", sorted(APPLICABLE))
def test_scenario_passes(suite: SuiteRun, scenario: str) -> None:
    assert scenario in suite.checks, f"no results for {scenario}:\n{suite.done.stdout}\n{suite.done.stderr}"
    checks = suite.checks[scenario]
    failed = [f"{c['id']} {c['status']}: {c.get('errorMessage', '')}" for c in checks if c["status"] not in PASSING]
    assert not failed, "\n".join([f"{scenario} applies to {APPLICABLE[scenario]}; failed checks:", *failed])
    assert any(check["status"] == "SUCCESS" for check in checks)
