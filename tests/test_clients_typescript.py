"""The real server over stdio, driven by the official TypeScript SDK's client (``tests/clients/ts_client.mjs``).

That client checks every tool result's ``structuredContent`` against the tool's ``outputSchema``, error
results included, and throws ``McpError`` -32602 on a mismatch. So each error an agent can meet must come
back as a schema-valid ``isError`` result carrying ``code`` and ``remediation``, never as a protocol error.
"""

from __future__ import annotations

import base64
import io
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.e2e import REPO, clean_environ, write_palette_plugin
from tests.fakes.runware_api import DEFAULT_KEY, FakeRunwareAPI
from tests.node_clients import PROJECT, node_clients, run

pytestmark = pytest.mark.slow

TS_CLIENT = PROJECT / "ts_client.mjs"
REQUEST_TIMEOUT_MS = 60_000
SESSION_TIMEOUT_S = 180
CORE_TOOLS = {"list_providers", "list_models", "generate_image"}

Step = dict[str, Any]


def call(name: str, **arguments: Any) -> Step:
    return {"op": "callTool", "name": name, "arguments": arguments}


@dataclass(frozen=True)
class Session:
    """What ts_client.mjs reported: the outcome of each named step, and the server's stderr."""

    outcomes: dict[str, dict[str, Any]]
    stderr: str
    stdout: str
    #: The ``notifications/message`` params the client received, in order.
    logs: list[dict[str, Any]]

    def result(self, name: str) -> dict[str, Any]:
        """The step's result; the test fails with the client's error when the step threw."""
        outcome = self.outcomes[name]
        assert outcome["ok"], f"{name}: {outcome['error']['message']}\nserver stderr:\n{self.stderr}"
        result: dict[str, Any] = outcome["result"]
        return result

    def error_of(self, name: str) -> dict[str, Any]:
        """The structured content of the step's ``isError`` result."""
        result = self.result(name)
        assert result["isError"] is True, result
        assert set(result["structuredContent"]) == {"error"}, result
        error: dict[str, Any] = result["structuredContent"]["error"]
        assert isinstance(error["code"], str) and isinstance(error["message"], str), error
        assert all(isinstance(step, str) for step in error["remediation"]), error
        return error


def drive(server_env: Mapping[str, str], steps: Mapping[str, Step]) -> Session:
    """Start ``python -m imagegen_mcp`` under the TypeScript client and run ``steps`` in order."""
    request = {
        "server": {
            "command": sys.executable,
            "args": ["-m", "imagegen_mcp"],
            "env": dict(server_env),
            "cwd": str(REPO),
        },
        "steps": list(steps.values()),
        "timeoutMs": REQUEST_TIMEOUT_MS,
    }
    clients = node_clients()
    done = run(
        ["node", TS_CLIENT], env=clients.environ(os.environ), input=json.dumps(request), timeout_s=SESSION_TIMEOUT_S
    )
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["initialize"]["ok"], f"{document['initialize']['error']}\n{document['stderr']}"
    outcomes = dict(zip(steps, document["steps"], strict=True))
    return Session(outcomes, document["stderr"], done.stdout, document["logs"])


OFFLINE_STEPS: dict[str, Step] = {
    "tools": {"op": "listTools"},
    "providers": call("list_providers"),
    "models": call("list_models"),
    "no_key": call("generate_image", prompt="a lighthouse at dusk"),
    "unknown_model": call("generate_image", prompt="a lighthouse at dusk", model="no_such_model"),
    "unknown_provider": call("list_models", provider="foo"),
    "invalid_arguments": call("generate_image", prompt="a lighthouse at dusk", count=99),
    "resources": {"op": "listResources"},
    "templates": {"op": "listResourceTemplates"},
    "prompts": {"op": "listPrompts"},
    "prompt": {"op": "getPrompt", "name": "create_image", "arguments": {"subject": "a fox", "style": "oil painting"}},
    "ping": {"op": "ping"},
    "complete_provider": {
        "op": "complete",
        "ref": {"type": "ref/resource", "uri": "imagegen://providers/{name}"},
        "argument": {"name": "name", "value": "r"},
    },
    "complete_style": {
        "op": "complete",
        "ref": {"type": "ref/prompt", "name": "create_image"},
        "argument": {"name": "style", "value": "wat"},
    },
    "log_level": {"op": "setLoggingLevel", "level": "info"},
    "logged_call": call("generate_image", prompt="a lighthouse, logged"),
}


@pytest.fixture(scope="module")
def offline(tmp_path_factory: pytest.TempPathFactory) -> Session:
    """One session against a server with no keys and no GPU, running every step above."""
    output = tmp_path_factory.mktemp("offline")
    return drive(clean_environ(IMAGEGEN_OUTPUT_DIR=str(output)), OFFLINE_STEPS)


def test_tools_are_listed_with_input_and_output_schemas(offline: Session) -> None:
    tools = {tool["name"]: tool for tool in offline.result("tools")["tools"]}
    assert set(tools) >= CORE_TOOLS
    for tool in tools.values():
        assert tool["description"]
        assert tool["inputSchema"]["type"] == "object"
        assert tool["outputSchema"]["type"] == "object"


def test_listings_are_results_valid_against_their_output_schemas(offline: Session) -> None:
    providers = offline.result("providers")
    models = offline.result("models")
    assert providers["isError"] is False and models["isError"] is False
    assert {"runware", "gemini", "flux_local"} <= {p["name"] for p in providers["structuredContent"]["providers"]}
    groups = models["structuredContent"]["providers"]
    assert groups
    for group in groups:
        assert all(model["id"].startswith(f"{group['provider']}:") for model in group["models"])


@pytest.mark.parametrize(
    ("step", "code"),
    [
        ("no_key", "no_provider_available"),
        ("unknown_model", "model_not_found"),
        ("unknown_provider", "provider_not_found"),
        ("invalid_arguments", "invalid_request"),
    ],
)
def test_offline_errors_are_schema_valid_results_with_remediation(offline: Session, step: str, code: str) -> None:
    error = offline.error_of(step)
    assert error["code"] == code
    assert error["remediation"], error


def test_a_missing_key_names_the_variables_to_set(offline: Session) -> None:
    remediation = " ".join(offline.error_of("no_key")["remediation"])
    assert "RUNWARE_API_KEY" in remediation and "GEMINI_API_KEY" in remediation


def test_protocol_listings_and_ping(offline: Session) -> None:
    resources = {resource["uri"] for resource in offline.result("resources")["resources"]}
    templates = {template["uriTemplate"] for template in offline.result("templates")["resourceTemplates"]}
    assert {"imagegen://providers", "imagegen://models"} <= resources
    assert {"imagegen://providers/{name}", "imagegen://images/{image_id}"} <= templates
    (prompt,) = offline.result("prompts")["prompts"]
    assert prompt["name"] == "create_image"
    assert [argument["name"] for argument in prompt["arguments"]] == ["subject", "style", "aspect_ratio"]
    (message,) = offline.result("prompt")["messages"]
    assert message["role"] == "user"
    assert "a fox" in message["content"]["text"] and "oil painting" in message["content"]["text"]
    assert offline.result("ping") == {}


def test_template_and_prompt_arguments_complete(offline: Session) -> None:
    assert offline.result("complete_provider")["completion"]["values"] == ["runware"]
    assert offline.result("complete_style")["completion"]["values"] == ["watercolor painting"]


def test_the_log_level_a_client_sets_brings_the_servers_logs(offline: Session) -> None:
    assert offline.result("log_level") == {}
    messages = [log["data"] for log in offline.logs]
    assert any("skipping runware:juggernaut_pro: RUNWARE_API_KEY is not set" in message for message in messages)
    assert {log["level"] for log in offline.logs} <= {"info", "notice", "warning", "error", "critical"}


def test_a_key_the_runware_server_rejects_is_a_schema_valid_authentication_error(tmp_path: Path) -> None:
    with FakeRunwareAPI(reject_key=True) as runware:
        env = clean_environ(IMAGEGEN_OUTPUT_DIR=str(tmp_path), RUNWARE_API_KEY=DEFAULT_KEY, RUNWARE_URL=runware.ws_url)
        session = drive(env, {"rejected": call("generate_image", prompt="a red fox in the snow")})
    error = session.error_of("rejected")
    assert error["code"] == "authentication_failed"
    assert any("RUNWARE_API_KEY" in step for step in error["remediation"])
    assert runware.auth_requests, "the server never reached the loopback Runware API"
    assert DEFAULT_KEY not in session.stdout


def palette_environ(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A server whose default provider is the test palette plugin, registered through its entry point."""
    return clean_environ(
        IMAGEGEN_OUTPUT_DIR=str(tmp_path / "out"),
        IMAGEGEN_DEFAULT_PROVIDER="palette",
        PYTHONPATH=write_palette_plugin(tmp_path / "plugin"),
        **extra,
    )


@pytest.mark.parametrize(
    ("failure", "code"),
    [
        ("auth", "authentication_failed"),
        ("rate_limited", "rate_limited"),
        ("blocked", "content_blocked"),
        ("server_error", "provider_error"),
        ("crash", "internal_error"),
    ],
)
def test_provider_failures_are_schema_valid_results(tmp_path: Path, failure: str, code: str) -> None:
    session = drive(
        palette_environ(tmp_path, PALETTE_FAIL=failure),
        {"failed": call("generate_image", prompt="a red square", fallback="strict")},
    )
    assert session.error_of("failed")["code"] == code


def test_a_generated_image_is_a_valid_result_and_its_link_reads_back(tmp_path: Path) -> None:
    session = drive(
        palette_environ(tmp_path),
        {
            "generated": call("generate_image", prompt="a green square", model="palette:solid_green"),
            "image": {"op": "readResource", "uri": "$steps/0/result/structuredContent/images/0/uri"},
        },
    )
    generated = session.result("generated")
    assert generated["isError"] is False
    (image,) = generated["structuredContent"]["images"]
    kinds = [block["type"] for block in generated["content"]]
    assert kinds.count("image") == kinds.count("resource_link") == 1
    (contents,) = session.result("image")["contents"]
    assert (contents["uri"], contents["mimeType"]) == (image["uri"], "image/png")
    with Image.open(io.BytesIO(base64.b64decode(contents["blob"]))) as png:
        assert png.size == (image["width"], image["height"])
    assert Path(image["path"]).parent == tmp_path / "out"
