"""Core results as MCP tool results: a short text, small previews, resource links, structured content.

Base64 appears only inside image content blocks (the previews); the full images are reachable through
resource links, so a result costs the agent's context a few kilobytes whatever the image size.
"""

from __future__ import annotations

from collections.abc import Sequence

import pybase64
from mcp_types import CallToolResult, ContentBlock, ImageContent, ResourceLink, TextContent
from pydantic import BaseModel

from imagegen_mcp.errors import ErrorPayload
from imagegen_mcp.jobs import Done, Ended, JobInfo, JobView
from imagegen_mcp.results import GenerateImageOutput, summary
from imagegen_mcp.server.schemas import ERROR_KEY


def view_content(view: JobView) -> CallToolResult:
    """What waiting for a job gives: its result, its error, or its handle while it still runs."""
    if isinstance(view, Done):
        return generation_content(view.output, view.previews)
    if isinstance(view, Ended):
        return error_content(view.error)
    return job_content(view, still_running=True)


def generation_content(output: GenerateImageOutput, previews: Sequence[bytes]) -> CallToolResult:
    blocks: list[ContentBlock] = [TextContent(type="text", text=summary(output))]
    for image, preview in zip(output.images, previews, strict=True):
        if preview:
            blocks.append(
                ImageContent(
                    type="image", data=pybase64.b64encode(preview).decode("ascii"), mime_type=image.preview_mime_type
                )
            )
        blocks.append(
            ResourceLink(
                type="resource_link",
                uri=image.uri,
                name=image.path.rsplit("/", 1)[-1],
                title=f"{output.model} seed {image.seed}",
                mime_type=image.mime_type,
                size=image.size_bytes,
            )
        )
    return CallToolResult(content=blocks, structured_content=output.model_dump(mode="json"))


def job_content(info: JobInfo, *, still_running: bool) -> CallToolResult:
    """A job's state as a normal (not error) result: ``{"job": {...}}`` and a sentence on what to do."""
    done = f"{round(100 * info.progress)}%" + (f", {info.message}" if info.message else "")
    if still_running:
        text = (
            f"Job {info.id} is still {info.status} ({done}); the work goes on. Call get_job with job_id "
            f"'{info.id}' to get the images (it waits up to wait_s seconds)."
        )
    else:
        text = f"Job {info.id} is {info.status} ({done})."
    return CallToolResult(
        content=[TextContent(type="text", text=text)], structured_content={"job": info.model_dump(mode="json")}
    )


def listing_content(output: BaseModel, text: str) -> CallToolResult:
    return CallToolResult(
        content=[TextContent(type="text", text=text)], structured_content=output.model_dump(mode="json")
    )


def error_content(payload: ErrorPayload) -> CallToolResult:
    """An ``isError`` result: the error as text a person or model reads, and as ``{"error": {...}}`` for
    clients (valid against every tool's output schema). The payload comes scrubbed of secrets."""
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
