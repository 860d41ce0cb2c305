"""Command line: ``imagegen-mcp [serve] | providers | models | generate``."""

from __future__ import annotations

import argparse
import sys
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import anyio
from pydantic import BaseModel

from imagegen_mcp import __version__, listings, logs
from imagegen_mcp.catalog import Catalog
from imagegen_mcp.config import Settings
from imagegen_mcp.errors import CatalogError, ConfigError, ImageGenError, redact
from imagegen_mcp.requests import ImageRequest, parse_arguments
from imagegen_mcp.service import ImageService


def _serve_options(parser: argparse.ArgumentParser, defaults: bool) -> None:
    """The serve options; without defaults on the subcommand, so it never overrides what came before it."""

    def default(value: object) -> object:
        return value if defaults else argparse.SUPPRESS

    parser.add_argument("--transport", choices=["stdio", "sse", "streamable-http"], default=default("stdio"))
    parser.add_argument("--host", default=default("127.0.0.1"), help="HTTP bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=default(8000), help="HTTP port (default 8000)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imagegen-mcp", description="MCP server for image generation.")
    parser.add_argument("--version", action="version", version=f"imagegen-mcp {__version__}")
    parser.add_argument("--config", type=Path, help="TOML file of settings (keys named like the variables)")
    # 'serve' is the default command, so its options work with or without the word.
    _serve_options(parser, defaults=True)
    commands = parser.add_subparsers(dest="command")
    _serve_options(commands.add_parser("serve", help="run the MCP server (the default)"), defaults=False)

    commands.add_parser("providers", help="show providers, availability and how to fix what is missing")
    models = commands.add_parser("models", help="show the model catalog")
    models.add_argument("--provider", help="only this provider's models")

    generate = commands.add_parser("generate", help="generate images once and print where they were saved")
    _request_options(generate, ImageRequest)
    return parser


def _request_options(parser: argparse.ArgumentParser, model: type[BaseModel]) -> None:
    """One option per field of the request model (``prompt`` positional), typed and described by the field."""
    for name, field in model.model_fields.items():
        kind, choices = _option_type(field.annotation)
        if name == "prompt":
            parser.add_argument("prompt", help=field.description)
            continue
        parser.add_argument(
            f"--{name.replace('_', '-')}", dest=name, type=kind, choices=choices, help=field.description
        )


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


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings.load(config_file=args.config)
        return _run(args, settings)
    except (ConfigError, CatalogError) as exc:
        print(f"imagegen-mcp: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _run(args: argparse.Namespace, settings: Settings) -> int:
    command = args.command or "serve"
    if command == "serve":
        return _serve(settings, args.transport, args.host, args.port)
    logs.configure(settings.log_level if command == "generate" else "WARNING", settings.secrets())
    service = ImageService(settings, Catalog.load(settings))
    if command == "providers":
        print(listings.providers_text(listings.providers(service)))
        return 0
    if command == "models":
        try:
            print(listings.models_text(listings.models(service, args.provider)))
        except ImageGenError as error:
            return _fail(error, settings)
        return 0
    return anyio.run(_generate, service, args)


def _serve(settings: Settings, transport: Literal["stdio", "sse", "streamable-http"], host: str, port: int) -> int:
    from imagegen_mcp.server.app import build_server

    server = build_server(settings)
    if transport == "stdio":
        anyio.run(server.run_stdio_async)
        return 0
    else:
        from imagegen_mcp.server.http import serve_http

        anyio.run(serve_http, server, settings, transport, host, port)
    return 0


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
    text = f"error [{error.code.value}]: {error.message}"
    text += "".join(f"\n  fix: {step}" for step in error.remediation)
    print(redact(text, settings.secrets()), file=sys.stderr)
    return 1
