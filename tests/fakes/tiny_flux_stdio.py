"""Serve the tiny flux_local test models over stdio: ``python -m tests.fakes.tiny_flux_stdio ROOT``.

The server is built and run as ``imagegen-mcp serve`` builds and runs it (settings from the environment,
logs to stderr), with the tiny pipelines under ROOT as flux_local's catalog.
"""

from __future__ import annotations

import sys
from pathlib import Path

import anyio

from imagegen_mcp.config import Settings
from imagegen_mcp.server.app import build_server
from tests.fakes.tiny_pipelines import TinyPipelines, tiny_provider_type


def main() -> None:
    provider_type = tiny_provider_type(TinyPipelines(Path(sys.argv[1])))
    server = build_server(Settings.load(), providers=[provider_type])
    anyio.run(server.run_stdio_async)


if __name__ == "__main__":
    main()
