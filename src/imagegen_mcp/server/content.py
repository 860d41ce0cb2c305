"""Service results as MCP tool results: a short text, small previews, resource links, structured content.

Base64 appears only inside image content blocks (the previews); the full images are reachable through
resource links, so a result costs the agent's context a few kilobytes whatever the image size.
"""

from __future__ import annotations

import json

import pybase64
from mcp_types import CallToolResult, ContentBlock, ImageContent, ResourceLink, TextContent
from pydantic import BaseModel

from imagegen_mcp.errors import ErrorPayload, ImageGenError, redact
from imagegen_mcp.results import generation_output, summary
from imagegen_mcp.server.schemas import ERROR_KEY
from imagegen_mcp.service import GenerationResult


def generation_content(result: GenerationResult) -> CallToolResult:
    blocks: list[ContentBlock] = [TextContent(type="text", text=summary(result))]
    for saved in result.images:
        image = saved.stored
        blocks.append(
            ImageContent(
                type="image",
                data=pybase64.b64encode(image.preview).decode("ascii"),
                mime_type=image.preview_mime_type,
            )
        )
        blocks.append(
            ResourceLink(
                type="resource_link",
                uri=image.uri,
                name=image.path.name,
                title=f"{result.model_id} seed {saved.seed}",
                mime_type=image.mime_type,
                size=image.size_bytes,
            )
        )
    structured = generation_output(result).model_dump(mode="json")
    return CallToolResult(content=blocks, structured_content=structured)


def listing_content(output: BaseModel, text: str) -> CallToolResult:
    return CallToolResult(
        content=[TextContent(type="text", text=text)], structured_content=output.model_dump(mode="json")
    )


def error_content(error: ImageGenError, secrets: list[str]) -> CallToolResult:
    """An ``isError`` result: the error as text a person or model reads, and as ``{"error": {...}}`` for
    clients (valid against every tool's output schema). Every string in it is scrubbed of configured secrets."""
    payload = ErrorPayload.model_validate(json.loads(redact(error.to_payload().model_dump_json(), secrets)))
    return CallToolResult(
        content=[TextContent(type="text", text=error_text(payload))],
        structured_content={ERROR_KEY: payload.model_dump(mode="json")},
        is_error=True,
    )


def error_text(payload: ErrorPayload) -> str:
    """The error in a few lines: code and message, the steps that fix it, whether and when to retry, and
    every candidate that was tried."""
    lines = [f"Error {payload.code.value}: {payload.message}"]
    if payload.remediation:
        lines.append("To fix:")
        lines += [f"- {step}" for step in payload.remediation]
    retry = "yes" if payload.retryable else "no"
    if payload.retry_after_s is not None:
        retry += f", after {payload.retry_after_s:g} s"
    lines.append(f"Retryable: {retry}")
    if payload.attempts:
        lines.append("Tried: " + "; ".join(attempt.describe() for attempt in payload.attempts))
    return "\n".join(lines)
