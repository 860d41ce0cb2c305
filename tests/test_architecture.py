"""The package's shape: no import cycle (lazy and ``TYPE_CHECKING`` imports included), a core that knows
nothing of the protocol, and a CLI whose listings import none of it."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

from tests.e2e import REPO, clean_environ

PACKAGE = REPO / "src" / "imagegen_mcp"
#: Modules that map the protocol to the core; nothing else may import them or the MCP SDK.
PROTOCOL_LAYER = "imagegen_mcp.server"
PROTOCOL_PACKAGES = ("mcp", "mcp_types")
#: The entry points that build the server (and so may import it, lazily).
SERVER_BUILDERS = {"imagegen_mcp.cli"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def imported_names(path: Path) -> set[str]:
    """Every module ``path`` imports anywhere: at the top, inside functions, under ``TYPE_CHECKING``."""
    names: set[str] = set()
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            names.add(base)
            # ``from package import module`` imports the module.
            names.update(f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in MODULES)
    return names


def graph() -> dict[str, set[str]]:
    return {
        name: {other for other in imported_names(path) if other in MODULES} - {name} for name, path in MODULES.items()
    }


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(edges[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_the_import_walk_sees_lazy_and_type_checking_imports() -> None:
    edges = graph()
    # Imported inside a function only (the heavy half of flux_local), and under TYPE_CHECKING.
    assert "imagegen_mcp.providers.flux_local.pipeline" in edges["imagegen_mcp.providers.flux_local.provider"]
    assert "imagegen_mcp.server.app" in edges["imagegen_mcp.cli"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_package_has_no_import_cycle() -> None:
    assert cycles(graph()) == []


def test_the_core_imports_nothing_of_the_protocol() -> None:
    for name, path in MODULES.items():
        if name.startswith(PROTOCOL_LAYER) or name in SERVER_BUILDERS:
            continue
        imported = imported_names(path)
        assert not [m for m in imported if m.startswith(PROTOCOL_LAYER)], name
        assert not [m for m in imported if m.split(".")[0] in PROTOCOL_PACKAGES], name


def test_the_cli_listings_import_nothing_of_the_server_or_the_mcp_sdk(tmp_path: Path) -> None:
    code = (
        "import json, sys\n"
        "from imagegen_mcp.cli import main\n"
        "for command in (['providers'], ['models']):\n"
        "    assert main(command) == 0\n"
        "protocol = ('mcp', 'mcp_types')\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] in protocol or m.startswith('imagegen_mcp.server')]\n"
        "print(json.dumps(sorted(loaded)), file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=clean_environ(IMAGEGEN_OUTPUT_DIR=str(tmp_path)),
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "runware" in done.stdout and "flux_local" in done.stdout
    assert json.loads(done.stderr.strip().splitlines()[-1]) == []
