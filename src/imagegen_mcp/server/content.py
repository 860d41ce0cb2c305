"""Service results as MCP tool results: a short text, small previews, resource links, structured content.

Base64 appears only inside image content blocks (the previews); the full images are reachable through
resource links, so a result costs the agent's context a few kilobytes whatever the image size.
"""

from __future__ import annotations

import json
from typing import Any

import pybase64
from mcp_types import CallToolResult, ContentBlock, ImageContent, ResourceLink, TextContent
from pydantic import BaseModel, Field

from imagegen_mcp.errors import Attempt, ErrorPayload, ImageGenError, redact
from imagegen_mcp.providers.base import ModelCapabilities
from imagegen_mcp.service import GenerationResult


class ImageInfo(BaseModel):
    id: str
    uri: str = Field(description="Resource URI; resources/read returns the full-resolution image.")
    path: str = Field(description="Absolute path of the saved file.")
    mime_type: str
    width: int
    height: int
    size_bytes: int
    seed: int | None = Field(description="The seed this image was actually generated with.")
    preview_mime_type: str
    preview_width: int
    preview_height: int


class GenerationParameters(BaseModel):
    width: int
    height: int
    aspect_ratio: str | None
    steps: int | None
    guidance_scale: float | None
    negative_prompt: str | None
    seed: int
    count: int


class GenerateImageOutput(BaseModel):
    images: list[ImageInfo]
    provider: str
    model: str = Field(description="The model that made the images, as 'provider:key'.")
    requested: str = Field(description="What the call asked for: a model id, a provider, or 'default'.")
    fell_back: bool = Field(description="True when another candidate than the first planned one served the call.")
    parameters: GenerationParameters
    elapsed_ms: int
    cost_usd: float | None
    attempts: list[Attempt]
    adjustments: list[str] = Field(description="What was changed about the request, and why.")
    details: dict[str, Any]


class ProviderStatus(BaseModel):
    name: str
    display_name: str
    description: str
    available: bool
    reason: str | None
    remediation: list[str]
    priority: int
    default_model: str
    model_count: int


class NextGeneration(BaseModel):
    provider: str | None
    model: str | None
    why: str


class ProvidersOutput(BaseModel):
    providers: list[ProviderStatus]
    default_provider: str | None = Field(description="IMAGEGEN_DEFAULT_PROVIDER, or null for 'first in order'.")
    default_model: str | None
    fallback_mode: str
    effective_order: list[str]
    next_generation: NextGeneration = Field(description="What a plain generate_image would use right now.")


class ModelInfo(BaseModel):
    id: str
    key: str
    display_name: str
    description: str
    capabilities: ModelCapabilities
    default: bool
    available: bool
    reason: str | None = Field(description="Why this model cannot run now, when it cannot.")


class ProviderModels(BaseModel):
    provider: str
    available: bool
    reason: str | None
    models: list[ModelInfo]


class ModelsOutput(BaseModel):
    providers: list[ProviderModels]


def generation_output(result: GenerationResult) -> GenerateImageOutput:
    job = result.parameters
    return GenerateImageOutput(
        images=[
            ImageInfo(
                id=saved.stored.id,
                uri=saved.stored.uri,
                path=str(saved.stored.path),
                mime_type=saved.stored.mime_type,
                width=saved.stored.width,
                height=saved.stored.height,
                size_bytes=saved.stored.size_bytes,
                seed=saved.seed,
                preview_mime_type=saved.stored.preview_mime_type,
                preview_width=saved.stored.preview_width,
                preview_height=saved.stored.preview_height,
            )
            for saved in result.images
        ],
        provider=result.provider,
        model=result.model_id,
        requested=result.requested,
        fell_back=result.fell_back,
        parameters=GenerationParameters(
            width=job.width,
            height=job.height,
            aspect_ratio=job.aspect_ratio,
            steps=job.steps,
            guidance_scale=job.guidance_scale,
            negative_prompt=job.negative_prompt,
            seed=job.seed,
            count=job.count,
        ),
        elapsed_ms=result.elapsed_ms,
        cost_usd=result.cost,
        attempts=result.attempts,
        adjustments=result.adjustments,
        details=result.details,
    )


def _summary(result: GenerationResult) -> str:
    count = len(result.images)
    lines = [
        f"Generated {count} image{'s' if count > 1 else ''} with {result.model_id} "
        f"in {result.elapsed_ms / 1000:.1f} s" + (f" (cost ${result.cost:.4f})" if result.cost is not None else "")
    ]
    skipped_or_failed = [a for a in result.attempts if a.outcome != "succeeded"]
    if skipped_or_failed:
        lines.append(
            "Fallback: " + "; ".join(f"{a.provider}:{a.model} {a.outcome} ({a.reason})" for a in skipped_or_failed)
        )
    lines += [f"Note: {note}" for note in result.adjustments]
    for saved in result.images:
        image = saved.stored
        lines.append(f"{image.path} ({image.width}x{image.height}, seed {saved.seed}) -> {image.uri}")
    return "\n".join(lines)


def generation_content(result: GenerationResult) -> CallToolResult:
    blocks: list[ContentBlock] = [TextContent(type="text", text=_summary(result))]
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
    """An ``isError`` result; every string in it is scrubbed of configured secrets."""
    payload = ErrorPayload.model_validate(json.loads(redact(error.to_payload().model_dump_json(), secrets)))
    lines = [f"{payload.code.value}: {payload.message}"]
    if payload.remediation:
        lines.append("To fix:")
        lines += [f"- {step}" for step in payload.remediation]
    if payload.retry_after_s is not None:
        lines.append(f"Retry after {payload.retry_after_s:g} s.")
    return CallToolResult(
        content=[TextContent(type="text", text="\n".join(lines))],
        structured_content=payload.model_dump(mode="json"),
        is_error=True,
    )
