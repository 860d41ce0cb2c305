"""A line on stdin that is not a JSON-RPC message gets JSON-RPC's error answer at once, on stdout, and the session
goes on: in the handshake era and the 2026-07-28 era, and after a thousand such lines."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, NamedTuple

import pytest
from mcp import StdioServerParameters
from mcp.client import Client
from mcp_types import INVALID_REQUEST, PARSE_ERROR, PROTOCOL_VERSION_META_KEY

from tests.e2e import INITIALIZE, INITIALIZED, REPO, clean_environ

SERVER = [sys.executable, "-m", "imagegen_mcp"]
#: How long the server may take to start and answer its first line.
STARTUP_S = 60.0
#: How long any later answer may take.
ANSWER_WITHIN_S = 5.0
MODERN_META = {
    PROTOCOL_VERSION_META_KEY: "2026-07-28",
    "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
    "io.modelcontextprotocol/clientCapabilities": {},
}


class Unreadable(NamedTuple):
    name: str
    line: bytes
    code: int
    #: The id of the answer: the request's own when the line has a method and a valid id, else None.
    answer_id: int | str | None = None


UNREADABLE = [
    Unreadable("truncated", b'{"jsonrpc": "2.0", "id": 1, "method": "ping"', PARSE_ERROR),
    Unreadable("lone surrogate", b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":"\\ud800"}}', PARSE_ERROR),
    Unreadable("nested 100000 deep", b"[" * 100_000, PARSE_ERROR),
    Unreadable("not UTF-8", b"\xff\xfe\xc3\x28", PARSE_ERROR),
    Unreadable("two values", b'{"jsonrpc":"2.0","method":"ping"} {}', PARSE_ERROR),
    Unreadable("NUL", b"\x00", PARSE_ERROR),
    Unreadable("number", b"42", INVALID_REQUEST),
    Unreadable("string", b'"ping"', INVALID_REQUEST),
    Unreadable("null", b"null", INVALID_REQUEST),
    Unreadable("empty batch", b"[]", INVALID_REQUEST),
    Unreadable("batch", b'[{"jsonrpc":"2.0","id":1,"method":"ping"}]', INVALID_REQUEST),
    Unreadable("method not a string", b'{"jsonrpc":"2.0","method":1,"params":"bar"}', INVALID_REQUEST),
    Unreadable("version 1.0", b'{"jsonrpc":"1.0","method":"ping"}', INVALID_REQUEST),
    Unreadable("params a list", b'{"jsonrpc":"2.0","id":7,"method":"tools/call","params":[1]}', INVALID_REQUEST, 7),
    Unreadable("params a string", b'{"jsonrpc":"2.0","id":"a","method":"ping","params":"x"}', INVALID_REQUEST, "a"),
    Unreadable("id a list", b'{"jsonrpc":"2.0","id":[7],"method":5}', INVALID_REQUEST),
    # A response in the server's id space: answering it with that id would end one of the client's requests.
    Unreadable("bad response", b'{"jsonrpc":"2.0","id":3,"result":5}', INVALID_REQUEST),
]


class StdioServer:
    """A server subprocess whose stdout a thread reads line by line (so that it never blocks on a full pipe)."""

    def __init__(self, process: subprocess.Popen[bytes], stderr: IO[bytes]) -> None:
        self.process = process
        self._stderr = stderr
        self.lines: queue.Queue[bytes] = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self._started = False

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)

    def write(self, *lines: bytes) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(b"".join(line + b"\n" for line in lines))
        self.process.stdin.flush()

    def send(self, *messages: dict[str, Any]) -> None:
        self.write(*(json.dumps(message).encode() for message in messages))

    def answer(self) -> dict[str, Any]:
        """The next line on stdout, one JSON-RPC message, which must come within :data:`ANSWER_WITHIN_S` (after
        the start)."""
        try:
            line = self.lines.get(timeout=ANSWER_WITHIN_S if self._started else STARTUP_S)
        except queue.Empty:
            pytest.fail(f"no answer in time; stderr:\n{self.stderr()}")
        self._started = True
        message = json.loads(line)
        assert isinstance(message, dict) and message["jsonrpc"] == "2.0", line
        return message

    def stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")


@contextmanager
def stdio_server() -> Iterator[StdioServer]:
    """The server on stdio; leaving closes its stdin, which must end it with status 0 and nothing more on stdout."""
    with tempfile.TemporaryDirectory(prefix="imagegen-stdio-") as output, tempfile.TemporaryFile() as stderr:
        env = clean_environ(IMAGEGEN_OUTPUT_DIR=str(Path(output) / "out"))
        process = subprocess.Popen(
            SERVER, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, env=env, cwd=REPO
        )
        server = StdioServer(process, stderr)
        try:
            yield server
            assert process.stdin is not None
            process.stdin.close()
            assert process.wait(timeout=30) == 0, server.stderr()
            server.reader.join(timeout=10)
            assert server.lines.empty(), "stdout carried more than the answers"
        finally:
            process.kill()
            process.wait()


def assert_rejected(answer: dict[str, Any], case: Unreadable) -> None:
    assert set(answer) == {"jsonrpc", "id", "error"}, (case.name, answer)
    assert answer["id"] == case.answer_id, case.name
    message = "Parse error" if case.code == PARSE_ERROR else "Invalid Request"
    assert (answer["error"]["code"], answer["error"]["message"]) == (case.code, message), case.name


def each_unreadable_then(server: StdioServer, request: dict[str, Any]) -> None:
    """Write each unreadable line followed by ``request``: the line's error comes first, then the answer."""
    for case in UNREADABLE:
        server.write(case.line)
        server.send(request)
        assert_rejected(server.answer(), case)
        assert "result" in server.answer(), case.name


def ping(request_id: int) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": "ping"}


def tool_names(answer: dict[str, Any]) -> set[str]:
    return {tool["name"] for tool in answer["result"]["tools"]}


def test_unreadable_lines_are_answered_before_and_after_the_handshake() -> None:
    with stdio_server() as server:
        each_unreadable_then(server, ping(1))
        server.send(INITIALIZE, INITIALIZED)
        assert server.answer()["id"] == INITIALIZE["id"]
        each_unreadable_then(server, ping(2))
        server.send({"jsonrpc": "2.0", "id": 3, "method": "tools/list"})
        listed = server.answer()
    assert listed["id"] == 3 and {"generate_image", "edit_image", "list_providers"} <= tool_names(listed)


def test_unreadable_lines_are_answered_in_the_2026_era() -> None:
    with stdio_server() as server:
        server.write(UNREADABLE[0].line)  # before the request that decides the era
        server.send({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": MODERN_META}})
        assert_rejected(server.answer(), UNREADABLE[0])
        listed = server.answer()
        # This era has no ping.
        each_unreadable_then(
            server, {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {"_meta": MODERN_META}}
        )
    assert listed["id"] == 1 and "generate_image" in tool_names(listed)


def test_a_request_after_a_thousand_unreadable_lines_is_answered() -> None:
    cases = [UNREADABLE[i % len(UNREADABLE)] for i in range(1000)]
    with stdio_server() as server:
        server.write(*(case.line for case in cases))
        server.send(INITIALIZE, INITIALIZED, {"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        for case in cases:
            assert_rejected(server.answer(), case)
        assert server.answer()["id"] == INITIALIZE["id"]
        listed = server.answer()
    assert listed["id"] == 1 and "generate_image" in tool_names(listed)


def test_blank_lines_are_not_messages_and_get_no_answer() -> None:
    with stdio_server() as server:
        server.write(b"", b"   ", b"\t")
        server.send(ping(1))
        assert server.answer() == {"jsonrpc": "2.0", "id": 1, "result": {}}


def test_bytes_that_are_not_utf8_inside_a_message_read_as_replacement_characters() -> None:
    """As the SDK reads stdin: a raw surrogate (or any byte that is not UTF-8) in a string does not cost the
    request, while a line of such bytes alone is not JSON (see UNREADABLE)."""
    with stdio_server() as server:
        server.write(b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":"\xed\xa0\x80\xff"}}')
        assert server.answer() == {"jsonrpc": "2.0", "id": 1, "result": {}}


@pytest.mark.anyio
async def test_the_sdk_client_is_served_as_before(tmp_path: Path) -> None:
    """The SDK's own client (which opens the 2026-07-28 era) sees the server it saw on the SDK's stdio."""
    env = clean_environ(IMAGEGEN_OUTPUT_DIR=str(tmp_path / "out"))
    parameters = StdioServerParameters(command=SERVER[0], args=SERVER[1:], env=env, cwd=str(REPO))
    async with Client(parameters) as client:
        tools = {tool.name for tool in (await client.list_tools()).tools}
        providers = await client.call_tool("list_providers", {})
        era = client.protocol_version
    assert era == "2026-07-28"
    assert {"generate_image", "edit_image", "get_job", "search_images"} <= tools
    assert not providers.is_error and providers.structured_content is not None
