"""Every tool, called through a real MCP client with generated arguments, answers with a tool result.

The arguments come from each tool's input schema as ``tools/list`` serves it (hypothesis-jsonschema), and
from variations of those: image references of every form in string fields (stored images, real and broken
data URIs, paths inside and outside the allowed folder, symlinks, devices, traversals, URLs), a wrong type,
an unknown key, a missing key, or arbitrary JSON. Each call must end within :data:`CALL_TIMEOUT_S` with a
``CallToolResult`` (never a protocol error) that validates against the tool's output schema; an error result
carries ``{"error": {"code": ...}}`` with a known code other than ``internal_error``; no text shows a
traceback; a stored image lies in the output root; and nothing outside the output root and the history
database (the working directory included) changes.

The run is reproducible (``derandomize``) and one server and client serve every example.
"""

from __future__ import annotations

import base64
import io
import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for
from mcp.client import Client
from mcp_types import CallToolResult, TextContent, Tool
from PIL import Image

from imagegen_mcp.config import Settings
from imagegen_mcp.errors import ErrorCode, RateLimitedError
from imagegen_mcp.providers.base import ImageInputs
from imagegen_mcp.server.app import build_server
from imagegen_mcp.testing import FunctionModelConfig, FunctionProvider, fails_with, photo_like_png
from tests.images import bomb_png, data_uri

#: Calls per run (hypothesis examples; each is one call).
CALLS = 2000
CALL_TIMEOUT_S = 20.0
KNOWN_CODES = {code.value for code in ErrorCode} - {ErrorCode.INTERNAL_ERROR.value}
TRACEBACK_MARKS = ("Traceback (most recent call last)", 'File "')
#: Small models, so that a generation that succeeds costs milliseconds.
EDITING_MODEL = FunctionModelConfig(
    key="editor",
    max_resolution=128,
    default_width=128,
    default_height=128,
    size_multiple=8,
    supports_loras=True,
    inputs=ImageInputs(image_to_image=True, inpaint=True, instruction_edit=True, max_reference_images=4),
)
PLAIN_MODEL = FunctionModelConfig(key="plain", max_resolution=96, default_width=64, default_height=64)
FLAKY_MODEL = FunctionModelConfig(key="flaky_model", max_resolution=64, default_width=64, default_height=64)
MODEL_IDS = ["function:editor", "function:plain", "flaky:flaky_model", "editor", "plain", "function:nothing"]
PROVIDERS = ["function", "flaky", "runware"]


@dataclass(frozen=True)
class World:
    """The folders of a run: what the server may write (``output``, ``state``) and what it must leave alone."""

    root: Path
    output: Path
    state: Path
    inputs: Path
    cwd: Path

    @classmethod
    def create(cls, root: Path) -> World:
        world = cls(root, root / "out", root / "state", root / "inputs", root / "a" / "b" / "c" / "cwd")
        for folder in (world.state, world.inputs, world.cwd):
            folder.mkdir(parents=True)
        png = photo_like_png(64, 64, 1)
        (world.inputs / "ok.png").write_bytes(png)
        (world.inputs / "truncated.png").write_bytes(png[: len(png) // 2])
        (world.inputs / "notes.png").write_text("not an image")
        (world.inputs / "bomb.png").write_bytes(bomb_png(100_000, 100_000))
        (world.root / "outside.png").write_bytes(png)
        (world.root / "x").write_text("a file beside the folders")
        (world.cwd / "x.png").write_bytes(png)
        (world.inputs / "escape.png").symlink_to(world.root / "outside.png")
        (world.inputs / "zero.png").symlink_to("/dev/zero")
        os.mkfifo(world.inputs / "pipe.png")
        return world

    def settings(self) -> Settings:
        return Settings.load(
            {
                "IMAGEGEN_OUTPUT_DIR": str(self.output),
                "IMAGEGEN_DB": str(self.state / "history.sqlite3"),
                "IMAGEGEN_INPUT_DIRS": str(self.inputs),
                "IMAGEGEN_DEFAULT_PROVIDER": "function",
                "IMAGEGEN_LOG_LEVEL": "ERROR",
            }
        )

    def snapshot(self) -> dict[str, tuple[int, int, int]]:
        """Every entry outside what the server may write: its mode, size and modification time."""
        entries: dict[str, tuple[int, int, int]] = {}
        for folder, names, files in os.walk(self.root):
            names[:] = [name for name in names if Path(folder, name) not in (self.output, self.state)]
            for name in [*names, *files]:
                status = os.lstat(Path(folder, name))
                entries[str(Path(folder, name).relative_to(self.root))] = (
                    status.st_mode,
                    status.st_size,
                    status.st_mtime_ns,
                )
        return entries


def grey_mask(size: int) -> bytes:
    """A greyscale PNG mask: white (repaint) in its middle, black (keep) around."""
    mask = Image.new("L", (size, size), 0)
    mask.paste(255, (size // 4, size // 4, 3 * size // 4, 3 * size // 4))
    buffer = io.BytesIO()
    mask.save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buffer, format="JPEG")
    return buffer.getvalue()


def references(world: World, stored: list[str], jobs: list[str]) -> st.SearchStrategy[str]:
    """Values for string arguments: a third of the time an image reference that resolves, a third the id of a
    real thing (stored image, job, model, provider), else any of those or an odd one."""
    images = [
        *(f"imagegen://images/{image_id}" for image_id in stored),
        data_uri(photo_like_png(64, 64, 2), "image/png"),
        data_uri(jpeg(32, 32), "image/jpeg"),
        data_uri(grey_mask(64), "image/png"),
        str(world.inputs / "ok.png"),
    ]
    ids = [*stored, *jobs, *MODEL_IDS, *PROVIDERS]
    return pick(images) | pick(ids) | pick(images + ids + odd_references(world, stored))


def pick(values: list[str]) -> st.SearchStrategy[str]:
    def value(index: int) -> str:  # by index, so that hypothesis shows a short strategy rather than every value
        return values[index]

    return st.sampled_from(range(len(values))).map(value)


def odd_references(world: World, stored: list[str]) -> list[str]:
    """References in every other form: odd spellings of good ones, and many that every image input must refuse."""
    png = photo_like_png(64, 64, 2)
    return [
        f"IMAGEGEN://IMAGES/{stored[0]}",
        f"  imagegen://images/{stored[0]}  ",
        f"imagegen://images/{stored[0]}/../../x",
        "imagegen://images/../../../x",
        "imagegen://images/",
        "imagegen:x",
        data_uri(png, "image/jpeg"),
        data_uri(bomb_png(100_000, 100_000), "image/png"),
        data_uri(png[:200], "image/png"),
        data_uri(b"GIF89a not a png", "image/png"),
        data_uri(b"hello", "text/plain"),
        "data:image/png;base64,!!!not base64!!!",
        "data:image/png;base64,",
        "data:image/png,rawbytes",
        "data:,",
        base64.b64encode(png).decode(),
        str(world.inputs / "truncated.png"),
        str(world.inputs / "notes.png"),
        str(world.inputs / "bomb.png"),
        str(world.inputs / "escape.png"),
        str(world.inputs / "zero.png"),
        str(world.inputs / "pipe.png"),
        str(world.inputs / ".." / "outside.png"),
        str(world.inputs),
        str(world.root / "outside.png"),
        str(world.output),
        "/etc/passwd",
        "/dev/zero",
        "/proc/self/environ",
        "/",
        "../x",
        "../../x",
        "../../../../x",
        "x.png",
        "~/x.png",
        "file:///etc/passwd",
        "http://127.0.0.1:9/x.png",
        "https://169.254.169.254/latest/meta-data",
        "job_0123456789abcdef",
        "20000101T000000Z-00000000",
        "\x00",
        "",
        " ",
        "C:\\Windows\\win.ini",
        "a" * 5000,
    ]


JSON_LEAVES = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)
)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)


#: How the other half of the calls' arguments are made ("references": in up to three fields of valid arguments).
KINDS = ["references", "valid", "wrong type", "unknown key", "missing key", "arbitrary"]


@st.composite
def tool_arguments(draw: st.DrawFn, schema: Mapping[str, Any], reference: st.SearchStrategy[str]) -> dict[str, Any]:
    """One call's arguments for a tool with this input schema: valid ones or a variation of them.

    Half of the calls are sparse: the required keys and at most one more, with a reference in each that takes
    any string. They are the calls that most often succeed.
    """
    properties: dict[str, Any] = schema.get("properties", {})
    names = sorted(properties)
    kind = "sparse" if draw(st.booleans()) else draw(st.sampled_from(KINDS))
    if kind == "arbitrary":
        keys = st.sampled_from(names) | st.text(max_size=10) if names else st.text(max_size=10)
        return draw(st.dictionaries(keys, JSON_VALUES, max_size=5))
    arguments = draw(from_schema(dict(schema), custom_formats={"path": reference}))
    assert isinstance(arguments, dict)
    if kind == "sparse":
        optional = sorted(set(arguments) - set(schema.get("required", [])))
        for name in optional[1:] if draw(st.booleans()) else optional:
            del arguments[name]
        for name in [name for name in arguments if takes_any_string(properties[name])]:
            arguments[name] = draw(references_for(properties[name], reference))
    elif kind == "references" and names:
        for name in draw(st.lists(st.sampled_from(names), min_size=1, max_size=3, unique=True)):
            arguments[name] = draw(references_for(properties[name], reference))
    elif kind == "wrong type" and names:
        arguments[draw(st.sampled_from(names))] = draw(JSON_VALUES)
    elif kind == "unknown key":
        arguments[draw(st.text(max_size=10).filter(lambda key: key not in properties))] = draw(JSON_VALUES)
    elif kind == "missing key" and arguments:
        del arguments[draw(st.sampled_from(sorted(arguments)))]
    return arguments


def takes_any_string(schema: Mapping[str, Any]) -> bool:
    """Whether a property takes a string (or an array of strings) without a pattern or a list of values."""
    item = schema["items"] if schema.get("type") == "array" else schema
    return item.get("type") == "string" and not {"pattern", "enum", "format"} & set(item)


def references_for(schema: Mapping[str, Any], reference: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    return st.lists(reference, max_size=4) if schema.get("type") == "array" else reference


async def call(client: Client, tool: str, arguments: dict[str, Any]) -> CallToolResult:
    with anyio.fail_after(CALL_TIMEOUT_S):
        return await client.call_tool(tool, arguments)


def check(result: CallToolResult, world: World, output: Validator | None) -> None:
    """The properties of every answer (the SDK's client has checked a success against the output schema)."""
    texts = [block.text for block in result.content if isinstance(block, TextContent)]
    shown = "\n".join([*texts, json.dumps(result.structured_content)])
    assert not [mark for mark in TRACEBACK_MARKS if mark in shown], shown
    structured = result.structured_content or {}
    if result.is_error:
        assert set(structured) == {"error"}, structured
        assert structured["error"]["code"] in KNOWN_CODES, structured
        if output is not None:
            output.validate(structured)
    for image in stored_images(structured):
        assert Path(image["path"]).parent == world.output, image


def stored_images(value: Any) -> Iterator[dict[str, Any]]:
    """Every object in ``value`` that describes a stored image (an ``imagegen://`` URI and a path)."""
    if isinstance(value, dict):
        if str(value.get("uri", "")).startswith("imagegen://images/") and "path" in value:
            yield value
        for item in value.values():
            yield from stored_images(item)
    elif isinstance(value, list):
        for item in value:
            yield from stored_images(item)


@contextmanager
def served(world: World) -> Iterator[tuple[BlockingPortal, Client]]:
    providers = [
        FunctionProvider(models=[EDITING_MODEL, PLAIN_MODEL], settings=world.settings()),
        FunctionProvider(
            fails_with(RateLimitedError("slow down", retry_after_s=1)),
            name="flaky",
            models=[FLAKY_MODEL],
            priority=20,
            settings=world.settings(),
        ),
    ]
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(Client(build_server(world.settings(), providers))) as client,
    ):
        yield portal, client


def seeds(portal: BlockingPortal, client: Client) -> tuple[list[str], list[str]]:
    """Real stored images, and jobs (one finished, one just started), for the references to name."""
    images = []
    for arguments in ({"prompt": "a seed", "count": 3}, {"prompt": "another", "width": 64, "height": 64, "count": 3}):
        result = portal.call(call, client, "generate_image", arguments)
        assert not result.is_error and result.structured_content is not None
        images += [image["id"] for image in result.structured_content["images"]]
    jobs = []
    for _ in range(2):
        started = portal.call(call, client, "generate_image", {"prompt": "a job", "wait_s": 0})
        assert started.structured_content is not None
        jobs.append(started.structured_content["job"]["id"])
    finished = portal.call(call, client, "get_job", {"job_id": jobs[0], "wait_s": 10})
    assert not finished.is_error and finished.structured_content is not None
    assert finished.structured_content["images"]
    return images, jobs


def test_every_tool_answers_every_generated_call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    world = World.create(tmp_path)
    monkeypatch.chdir(world.cwd)
    before = world.snapshot()
    answered: list[str] = []
    with served(world) as (portal, client):
        tools: list[Tool] = portal.call(client.list_tools).tools
        outputs = {
            tool.name: validator_for(tool.output_schema)(tool.output_schema) for tool in tools if tool.output_schema
        }
        images, jobs = seeds(portal, client)
        reference = references(world, images, jobs)
        calls = st.one_of(
            [st.tuples(st.just(tool.name), tool_arguments(tool.input_schema, reference)) for tool in tools]
        )

        @settings(
            max_examples=CALLS,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
        )
        @given(calls)
        def answered_properly(tool_call: tuple[str, dict[str, Any]]) -> None:
            tool, arguments = tool_call
            untouched = world.snapshot()
            check(portal.call(call, client, tool, arguments), world, outputs.get(tool))
            assert world.snapshot() == untouched
            answered.append(tool)

        answered_properly()
    assert world.snapshot() == before  # background jobs included
    assert len(answered) >= CALLS
    assert set(answered) == {tool.name for tool in tools}
