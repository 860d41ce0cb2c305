"""Command line, for people: ``imagegen-mcp [serve] | providers | models | generate``.

``serve`` (the default) runs the MCP server; the others check a setup or make an image from a terminal.
Messages name the commands, flags and variables a person types, never the tools an agent calls.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import sys
import threading
import typing
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

import anyio
from pydantic import BaseModel

from imagegen_mcp import __version__, listings, logs
from imagegen_mcp.catalog import Catalog
from imagegen_mcp.config import Settings
from imagegen_mcp.errors import CatalogError, ConfigError, ErrorCode, ImageGenError, redact
from imagegen_mcp.requests import ImageRequest, parse_arguments
from imagegen_mcp.service import ImageService

Transport = Literal["stdio", "sse", "streamable-http"]
#: How long a stopped server may take to close providers before the process ends anyway.
STOP_GRACE_S = 0.5
#: Help for the request options where the field's own description speaks of tools.
OPTION_HELP = {
    "model": "model id 'provider:key' (see `imagegen-mcp models`); default: the configured one",
    "provider": "provider name (see `imagegen-mcp providers`)",
}
#: Tool names and phrases of the server's messages, as a person at a terminal would say them.
TERMINAL_PHRASES = (
    (re.compile(r"\bCall (list_models|list_providers)\b"), r"Run \1"),
    (re.compile(r"\blist_models\b"), "`imagegen-mcp models`"),
    (re.compile(r"\blist_providers\b"), "`imagegen-mcp providers`"),
    (re.compile(r"\bgenerate_image\b"), "`imagegen-mcp generate`"),
    (re.compile(r"the tool's input schema gives every limit"), "`imagegen-mcp generate --help` lists every option"),
    (re.compile(r"'(provider|model)'"), r"--\1"),
)


def _serve_options(parser: argparse.ArgumentParser, defaults: bool) -> None:
    """The serve options; without defaults on the subcommand, so it never overrides what came before it."""

    def default(value: object) -> object:
        return value if defaults else argparse.SUPPRESS

    parser.add_argument(
        "--transport",
        choices=["stdio", "sse", "streamable-http"],
        default=default("stdio"),
        help="how clients connect: stdio (default; the client starts the server), sse or streamable-http",
    )
    parser.add_argument("--host", default=default("127.0.0.1"), help="HTTP bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=default(8000), help="HTTP port (default 8000)")


def _common_options(parser: argparse.ArgumentParser, defaults: bool) -> None:
    def default(value: object) -> object:
        return value if defaults else argparse.SUPPRESS

    parser.add_argument(
        "--config",
        type=Path,
        default=default(None),
        help="TOML file of settings, keys named like the environment variables (default: IMAGEGEN_CONFIG)",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=default(0),
        help="show log messages on stderr (-v: progress, -vv: debugging detail)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imagegen-mcp",
        description="MCP server that generates images with Runware, local diffusers models and Google Gemini. "
        "Without a command it runs the server on stdio, as MCP clients start it.",
    )
    parser.add_argument("-V", "--version", action="version", version=f"imagegen-mcp {__version__}")
    _common_options(parser, defaults=True)
    # 'serve' is the default command, so its options work with or without the word.
    _serve_options(parser, defaults=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", help="what to do (default: serve)")
    serve = commands.add_parser("serve", help="run the MCP server (the default)")
    _serve_options(serve, defaults=False)
    _common_options(serve, defaults=False)

    providers = commands.add_parser("providers", help="show providers, availability and how to fix what is missing")
    _common_options(providers, defaults=False)
    models = commands.add_parser("models", help="show the model catalog")
    models.add_argument("--provider", help="only this provider's models")
    _common_options(models, defaults=False)

    generate = commands.add_parser("generate", help="generate images once and print where they were saved")
    _request_options(generate, ImageRequest)
    _common_options(generate, defaults=False)
    return parser


def _request_options(parser: argparse.ArgumentParser, model: type[BaseModel]) -> None:
    """One option per field of the request model (``prompt`` positional), typed and described by the field."""
    for name, field in model.model_fields.items():
        kind, choices = _option_type(field.annotation)
        description = OPTION_HELP.get(name, field.description)
        if name == "prompt":
            parser.add_argument("prompt", help=description)
            continue
        flag = f"--{name.replace('_', '-')}"
        parser.add_argument(flag, dest=name, type=kind, choices=choices, help=description)


def _option_type(annotation: Any) -> tuple[Callable[[str], Any], list[str] | None]:
    """The parser and the choices for a field typed ``int``, ``float``, ``str`` or ``Literal[...]``,
    optional or not."""
    args = [arg for arg in typing.get_args(annotation) if arg is not type(None)] or [annotation]
    kind = args[0]
    if typing.get_origin(kind) is Literal:
        return str, [str(choice) for choice in typing.get_args(kind)]
    if kind in (int, float, str):
        return typing.cast(Callable[[str], Any], kind), None
    raise TypeError(f"no command-line option type for {annotation!r}")


def for_terminal(text: str) -> str:
    """``text`` with the tools it names replaced by the commands a person runs."""
    for pattern, replacement in TERMINAL_PHRASES:
        text = pattern.sub(replacement, text)
    return text


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings.load(config_file=args.config)
        return _run(args, settings)
    except (ConfigError, CatalogError) as exc:
        print(f"imagegen-mcp: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("imagegen-mcp: interrupted", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace, settings: Settings) -> int:
    command = args.command or "serve"
    if command == "serve":
        if args.verbose:
            settings = settings.model_copy(update={"log_level": "DEBUG" if args.verbose > 1 else "INFO"})
        return _serve(settings, args.transport, args.host, args.port)
    level = {0: logging.ERROR, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logs.configure(logging.getLevelName(level), settings.secrets())
    service = ImageService(settings, Catalog.load(settings))
    if command == "providers":
        print(for_terminal(listings.providers_text(listings.providers(service))))
        return 0
    if command == "models":
        try:
            print(for_terminal(listings.models_text(listings.models(service, args.provider))))
        except ImageGenError as error:
            return _fail(error, settings)
        return 0
    return anyio.run(_generate, service, args)


def _serve(settings: Settings, transport: Transport, host: str, port: int) -> int:
    from imagegen_mcp.server.app import build_server

    server = build_server(settings)
    if transport == "stdio":
        if sys.stdin.isatty():
            print(
                "imagegen-mcp: MCP server on stdio, waiting for a client to speak JSON-RPC (Ctrl-C stops it). "
                "MCP clients start it themselves; try `imagegen-mcp providers` or `imagegen-mcp generate "
                "'a lighthouse'` in a shell.",
                file=sys.stderr,
            )
        return anyio.run(_until_stopped, server.run_stdio_async)
    from imagegen_mcp.server.http import serve_http

    # uvicorn handles SIGINT and SIGTERM itself: it stops accepting, gives open requests and streams
    # STOP_GRACE_S, runs the shutdown (which closes the providers), then lets the signal end the process.
    anyio.run(serve_http, server, settings, transport, host, port, STOP_GRACE_S)
    return 0


async def _until_stopped(serve: Callable[[], Awaitable[None]]) -> int:
    """Run the stdio server until stdin ends or SIGINT/SIGTERM arrives, then stop within :data:`STOP_GRACE_S`.

    Cancelling the server closes the providers at once; what may still hold the process is the SDK's stdio
    reader, blocked in a thread on a read of stdin that only returns when the client writes or closes it. So
    a signal also arms a timer that ends the process once the grace time is up.
    """
    stopped_by: int | None = None
    async with anyio.create_task_group() as group:

        async def run() -> None:
            await serve()
            group.cancel_scope.cancel()

        group.start_soon(run)
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                stopped_by = signum
                code = 128 + signum
                print(f"imagegen-mcp: stopping ({signal.Signals(signum).name})", file=sys.stderr)
                sys.stderr.flush()
                timer = threading.Timer(STOP_GRACE_S, os._exit, args=(code,))
                timer.daemon = True
                timer.start()
                group.cancel_scope.cancel()
                break
    return 0 if stopped_by is None else 128 + stopped_by


async def _generate(service: ImageService, args: argparse.Namespace) -> int:
    fields = {name: getattr(args, name) for name in ImageRequest.model_fields}
    try:
        request = parse_arguments(ImageRequest, {k: v for k, v in fields.items() if v is not None})
        result = await service.generate(request)
    except ImageGenError as error:
        return _fail(error, service.settings)
    finally:
        await service.aclose()
    for note in result.adjustments:
        print(f"note: {note}", file=sys.stderr)
    if result.fell_back:
        print(f"note: served by {result.model_id} after fallback", file=sys.stderr)
    for saved in result.images:
        print(f"{saved.stored.path}\t{saved.stored.width}x{saved.stored.height}\tseed={saved.seed}\t{result.model_id}")
    return 0


def _fail(error: ImageGenError, settings: Settings) -> int:
    message = error.message
    if error.code == ErrorCode.INVALID_REQUEST:
        # Argument names as the flags that set them.
        for name in ImageRequest.model_fields:
            message = re.sub(rf"\b{name}: ", f"--{name.replace('_', '-')}: ", message)
    text = f"error [{error.code.value}]: {message}"
    text += "".join(f"\n  fix: {step}" for step in error.remediation)
    print(redact(for_terminal(text), settings.secrets()), file=sys.stderr)
    return 1
