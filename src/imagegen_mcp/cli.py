"""Command line, for people: ``imagegen-mcp [serve] | providers | models | generate | history | gallery | pull``.

``serve`` (the default) runs the MCP server; the others check a setup or make an image from a terminal.
Messages name the commands, flags and variables a person types, never the tools an agent calls.
"""

from __future__ import annotations

import argparse
import functools
import logging
import math
import os
import re
import signal
import sys
import threading
import typing
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import anyio
from pydantic import BaseModel

from imagegen_mcp import __version__, archive, listings, logs
from imagegen_mcp.archive import SearchImagesArgs
from imagegen_mcp.catalog import Catalog, ProviderSpec
from imagegen_mcp.config import Settings
from imagegen_mcp.errors import CatalogError, ConfigError, ErrorCode, ImageGenError, redact
from imagegen_mcp.jobs import Done, Ended
from imagegen_mcp.providers.base import LoraSpec
from imagegen_mcp.requests import ImageRequest, parse_arguments
from imagegen_mcp.runtime import Runtime
from imagegen_mcp.service import ImageService

if TYPE_CHECKING:
    from imagegen_mcp.providers.flux_local.pull import Pull

Transport = Literal["stdio", "sse", "streamable-http"]
#: How long a stopped server may take to close providers before the process ends anyway.
STOP_GRACE_S = 0.5
#: Help for the request options where the field's own description speaks of tools.
OPTION_HELP = {
    "model": "model id 'provider:key' (see `imagegen-mcp models`); default: the configured one",
    "provider": "provider name (see `imagegen-mcp providers`)",
}
LORA_HELP = (
    "a LoRA to apply, repeatable: a .safetensors file, or its id (Runware AIR id; 'org/repo/file.safetensors' "
    "on Hugging Face for local models), with an optional weight, e.g. --lora civitai:58390@62833=0.8"
)
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

    history = commands.add_parser("history", help="list earlier images, newest first, or those whose prompt matches")
    history.add_argument("query", nargs="?", help="words of the prompt (the last may be unfinished)")
    history.add_argument("--provider", help="only this provider's images")
    history.add_argument("--model", help="only this model's images ('provider:key')")
    history.add_argument("--limit", type=int, default=20, help="how many (default 20, at most 100)")
    _common_options(history, defaults=False)

    gallery = commands.add_parser(
        "gallery",
        help="show the images in a web browser: starts a server on this machine and prints the page's address",
        description="Serve the gallery of generated images (search, filters, full-size view, new variations, edits, "
        "deletion) on 127.0.0.1 and print its URL; open it in a browser. Ctrl-C stops it.",
    )
    gallery.add_argument("--port", type=int, default=0, help="HTTP port (default: any free one)")
    _common_options(gallery, defaults=False)

    pull = commands.add_parser(
        "pull",
        help="download a local model's weights into the cache the flux_local provider reads",
        description="Download a flux_local model's weights (and the base configs it needs) from Hugging Face "
        "into FLUX_LOCAL_CACHE_DIR, or huggingface_hub's cache when that is not set. A running server sees "
        "the model without a restart. After an interruption run it again: files that completed are kept.",
    )
    pull.add_argument("model", help="model key or id, e.g. sd_turbo or flux_local:sd_turbo (see `imagegen-mcp models`)")
    pull.add_argument(
        "--dry-run", action="store_true", help="show what would be downloaded and its size; write nothing"
    )
    _common_options(pull, defaults=False)
    return parser


def _request_options(parser: argparse.ArgumentParser, model: type[BaseModel]) -> None:
    """One option per field of the request model (``prompt`` positional), typed and described by the field."""
    for name, field in model.model_fields.items():
        kind, choices = _option_type(field.annotation)
        description = OPTION_HELP.get(name, field.description)
        if name == "prompt":
            parser.add_argument("prompt", help=description)
            continue
        if kind is _lora_option:
            parser.add_argument(
                "--lora", dest=name, type=kind, action="append", metavar="ID_OR_PATH[=WEIGHT]", help=LORA_HELP
            )
            continue
        flag = f"--{name.replace('_', '-')}"
        parser.add_argument(flag, dest=name, type=kind, choices=choices, help=description)


def _lora_option(text: str) -> dict[str, Any]:
    """``--lora`` as a LoRA spec: a file on this machine, else a vendor id, with an optional ``=WEIGHT``."""
    source, _, weight = text.rpartition("=")
    if not source:
        source, weight = text, ""
    try:
        spec: dict[str, Any] = {"weight": float(weight)} if weight else {}
    except ValueError:
        raise argparse.ArgumentTypeError(f"{weight!r} is not a weight (a number, e.g. {source}=0.8)") from None
    # 'org/repo/file.safetensors' is a Hugging Face id unless such a file is here or the text reads as a path.
    local = Path(source).expanduser()
    if local.exists() or source.startswith(("/", ".", "~")):
        return {**spec, "path": str(local)}
    return {**spec, "model": source}


def _option_type(annotation: Any) -> tuple[Callable[[str], Any], list[str] | None]:
    """The parser and the choices for a field typed ``int``, ``float``, ``str``, ``Literal[...]`` or a list of
    LoRAs, optional or not."""
    args = [arg for arg in typing.get_args(annotation) if arg is not type(None)] or [annotation]
    kind = args[0]
    if typing.get_args(kind) == (LoraSpec,):
        return _lora_option, None
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


def main(argv: list[str] | None = None, providers: Sequence[ProviderSpec] | None = None) -> int:
    """Run the command ``argv`` names; ``providers`` replaces the entry-point providers (tests, embedding)."""
    args = _parser().parse_args(argv)
    try:
        settings = Settings.load(config_file=args.config)
        return _run(args, settings, providers)
    except (ConfigError, CatalogError) as exc:
        print(f"imagegen-mcp: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("imagegen-mcp: interrupted", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace, settings: Settings, providers: Sequence[ProviderSpec] | None) -> int:
    command = args.command or "serve"
    if command == "serve":
        if args.verbose:
            settings = settings.model_copy(update={"log_level": "DEBUG" if args.verbose > 1 else "INFO"})
        return _serve(settings, args.transport, args.host, args.port, providers)
    if command == "gallery":
        return _gallery(settings, args.port, providers)
    level = {0: logging.ERROR, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logs.configure(logging.getLevelName(level), settings.secrets())
    service = ImageService(settings, Catalog.load(settings, providers))
    if command == "providers":
        print(for_terminal(listings.providers_text(listings.providers(service))))
        return 0
    if command == "models":
        try:
            print(for_terminal(listings.models_text(listings.models(service, args.provider))))
        except ImageGenError as error:
            return _fail(error, settings)
        return 0
    if command == "history":
        return anyio.run(_history, service, args)
    if command == "pull":
        return _pull(service, args.model, dry_run=args.dry_run)
    return anyio.run(_generate, service, args)


def _serve(
    settings: Settings, transport: Transport, host: str, port: int, providers: Sequence[ProviderSpec] | None
) -> int:
    from imagegen_mcp.server.app import build_app
    from imagegen_mcp.server.stdio import run_stdio

    app = build_app(settings, providers)
    if transport == "stdio":
        if sys.stdin.isatty():
            print(
                "imagegen-mcp: MCP server on stdio, waiting for a client to speak JSON-RPC (Ctrl-C stops it). "
                "MCP clients start it themselves; try `imagegen-mcp providers` or `imagegen-mcp generate "
                "'a lighthouse'` in a shell.",
                file=sys.stderr,
            )
        return anyio.run(_until_stopped, functools.partial(run_stdio, app.server), app.reload_config)
    from imagegen_mcp.server.http import http_app, serve_http

    asgi = http_app(app.server, settings, transport, host)  # refuses a bind it must not serve, before serving

    async def serve() -> None:
        # uvicorn handles SIGINT and SIGTERM itself: it stops accepting, gives open requests and streams
        # STOP_GRACE_S, runs the shutdown (which closes the providers), then lets the signal end the process.
        async with anyio.create_task_group() as group:
            group.start_soon(_reload_on_sighup, app.reload_config)
            await serve_http(asgi, settings, host, port, STOP_GRACE_S)
            group.cancel_scope.cancel()

    anyio.run(serve)
    return 0


async def _reload_on_sighup(reload: Callable[[], Awaitable[bool]]) -> None:
    """Read the config file again on each SIGHUP (where the platform has it)."""
    if not hasattr(signal, "SIGHUP"):
        return
    with anyio.open_signal_receiver(signal.SIGHUP) as signals:
        async for _ in signals:
            await reload()


def _gallery(settings: Settings, port: int, providers: Sequence[ProviderSpec] | None) -> int:
    from imagegen_mcp.server.app import build_server
    from imagegen_mcp.server.gallery import LOOPBACK, serve_gallery
    from imagegen_mcp.server.http import http_app

    app = http_app(build_server(settings, providers), settings, "streamable-http", LOOPBACK)

    def ready(url: str) -> None:
        print(f"Gallery at {url} (Ctrl-C stops it)", flush=True)

    anyio.run(serve_gallery, app, settings, port, STOP_GRACE_S, ready)
    return 0


async def _until_stopped(serve: Callable[[], Awaitable[None]], reload: Callable[[], Awaitable[bool]]) -> int:
    """Run the stdio server until stdin ends or SIGINT/SIGTERM arrives, then stop within :data:`STOP_GRACE_S`;
    SIGHUP reads the config file again.

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
        group.start_soon(_reload_on_sighup, reload)
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
    """One job, as the server runs them (so it is in the history), waited for to its end."""
    fields = {name: getattr(args, name) for name in ImageRequest.model_fields}
    arguments = {name: value for name, value in fields.items() if value is not None}
    async with Runtime(service).session() as runtime:
        try:
            request = parse_arguments(ImageRequest, arguments)
            job_id = await runtime.jobs.submit("generate", request, arguments)
            view = await runtime.jobs.wait(job_id, math.inf, cancel_with_caller=True)
        except ImageGenError as error:
            return _fail(error, service.settings)
    if isinstance(view, Ended):
        return _fail_payload(view.error.code.value, view.error.message, view.error.remediation, service.settings)
    assert isinstance(view, Done)
    output = view.output
    for note in output.adjustments:
        print(f"note: {note}", file=sys.stderr)
    if output.fell_back:
        print(f"note: served by {output.model} after fallback", file=sys.stderr)
    for image in output.images:
        print(f"{image.path}\t{image.width}x{image.height}\tseed={image.seed}\t{output.model}")
    return 0


async def _history(service: ImageService, args: argparse.Namespace) -> int:
    async with Runtime(service).session() as runtime:
        try:
            search = parse_arguments(
                SearchImagesArgs,
                {"query": args.query, "provider": args.provider, "model": args.model, "limit": args.limit},
            )
            output = await archive.search(runtime.history, search)
        except ImageGenError as error:
            return _fail(error, service.settings)
    if not output.images:
        print("no image" + (f" matches {args.query!r}" if args.query else " yet"), file=sys.stderr)
        return 0
    rows = [
        (image.created_at, image.model, f"{image.width}x{image.height}", image.uri, image.prompt)
        for image in output.images
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True)) + "  " + row[4][:80])
    return 0


def _pull(service: ImageService, name: str, *, dry_run: bool) -> int:
    """Download a local model's weights: progress bars on stderr, what was fetched and where on stdout."""
    from imagegen_mcp.providers.flux_local.pull import pull_model

    try:
        done = pull_model(service.catalog.providers, name, dry_run=dry_run)
    except ImageGenError as error:
        return _fail(error, service.settings)
    except KeyboardInterrupt:
        print(f"imagegen-mcp: interrupted; `imagegen-mcp pull {name}` again fetches the rest", file=sys.stderr)
        return 130
    print(_pull_text(done))
    return 0


def _pull_text(done: Pull) -> str:
    model_id = f"flux_local:{done.model.key}"
    verb = "would fetch" if done.dry_run else "fetched"
    lines = [f"{verb} {source.repo_id}: {file.filename} ({_size(file.size)})" for source, file in done.fetched]
    if done.cached_files:
        lines.append(f"already in the cache: {done.cached_files} file(s)")
    total = f"{len(done.fetched)} file(s), {_size(done.fetched_bytes)}"
    if not done.hub:
        lines.append(f"{model_id} loads from files on this machine: nothing to pull")
    elif done.dry_run:
        lines.append(f"{model_id}: would fetch {total} into {done.cache} (dry run: nothing was written)")
    elif done.fetched:
        lines.append(f"{model_id} is ready: fetched {total} into {done.cache}")
    else:
        lines.append(f"{model_id} is ready: every file was already in {done.cache}")
    lines += [f"  {source.description}: {source.folder}" for source in done.hub]
    lines += [f"  {source.description}: {source.path} (on this machine)" for source in done.local]
    return "\n".join(lines)


def _size(size: int | None) -> str:
    """Bytes in decimal units, as huggingface_hub's progress bars and the Hub's pages count them."""
    if size is None:
        return "size unknown"
    value, unit = float(size), "B"
    for larger in ("kB", "MB", "GB"):
        if value < 1000:
            break
        value, unit = value / 1000, larger
    return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"


def _fail(error: ImageGenError, settings: Settings) -> int:
    return _fail_payload(error.code.value, error.message, error.remediation, settings)


def _fail_payload(code: str, message: str, remediation: Sequence[str], settings: Settings) -> int:
    if code == ErrorCode.INVALID_REQUEST:
        # Argument names as the flags that set them.
        for name in ImageRequest.model_fields:
            message = re.sub(rf"\b{name}: ", f"--{name.replace('_', '-')}: ", message)
    text = f"error [{code}]: {message}"
    text += "".join(f"\n  fix: {step}" for step in remediation)
    print(redact(for_terminal(text), settings.secrets()), file=sys.stderr)
    return 1
