"""Command line: ``imagegen-mcp [serve] | providers | models | generate``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Literal

import anyio

from imagegen_mcp import __version__, logs
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
    generate.add_argument("prompt")
    generate.add_argument("--model")
    generate.add_argument("--provider")
    generate.add_argument("--negative-prompt")
    generate.add_argument("--width", type=int)
    generate.add_argument("--height", type=int)
    generate.add_argument("--aspect-ratio")
    generate.add_argument("--steps", type=int)
    generate.add_argument("--guidance-scale", type=float)
    generate.add_argument("--seed", type=int)
    generate.add_argument("--count", type=int, default=1)
    generate.add_argument("--fallback", choices=["auto", "strict"])
    return parser


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
    if command in ("providers", "models"):
        from imagegen_mcp.server import reports

        if command == "providers":
            print(reports.providers_text(reports.providers(service)))
        else:
            try:
                print(reports.models_text(reports.models(service, args.provider)))
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
    fields: dict[str, Any] = {
        "prompt": args.prompt,
        "model": args.model,
        "provider": args.provider,
        "negative_prompt": args.negative_prompt,
        "width": args.width,
        "height": args.height,
        "aspect_ratio": args.aspect_ratio,
        "steps": args.steps,
        "guidance_scale": args.guidance_scale,
        "seed": args.seed,
        "count": args.count,
        "fallback": args.fallback,
    }
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
