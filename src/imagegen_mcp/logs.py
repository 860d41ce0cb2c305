"""Logging to stderr with every configured secret scrubbed from every record.

stdout belongs to the protocol in stdio mode, so nothing here ever writes to it.
"""

from __future__ import annotations

import logging
import sys

from imagegen_mcp.errors import redact


class RedactingFilter(logging.Filter):
    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message, self.secrets)
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info), self.secrets)
            record.exc_info = None
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        return True


def configure(level: str, secrets: list[str]) -> None:
    """Send logs to stderr and scrub secrets from every root handler, including ones added by libraries."""
    root = logging.getLogger()
    ours = next((handler for handler in root.handlers if getattr(handler, "_imagegen", False)), None)
    if ours is None:
        ours = logging.StreamHandler(sys.stderr)
        ours.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        ours._imagegen = True  # type: ignore[attr-defined]
        root.addHandler(ours)
    # The handler's level is what stderr shows; the root's may go lower when a client asks for more.
    ours.setLevel(level)
    root.setLevel(level)
    # Pillow logs every PNG chunk at DEBUG; that drowns the server's own debug output.
    logging.getLogger("PIL").setLevel(max(logging.INFO, root.level))
    for handler in root.handlers:
        handler.filters = [f for f in handler.filters if not isinstance(f, RedactingFilter)]
        handler.addFilter(RedactingFilter(secrets))


def add_handler(handler: logging.Handler) -> None:
    """Add ``handler`` to the root logger in place of any earlier one of its class (a server built again in
    the same process replaces its predecessor's)."""
    root = logging.getLogger()
    for existing in [h for h in root.handlers if type(h) is type(handler)]:
        root.removeHandler(existing)
    root.addHandler(handler)
