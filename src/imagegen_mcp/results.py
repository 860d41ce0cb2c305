"""A generation result as the structured output every client reads, and as a short text."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from imagegen_mcp.errors import Attempt
from imagegen_mcp.service import GenerationResult


class ImageInfo(BaseModel):
    id: str
    uri: str = Field(description="Resource URI; resources/read returns the full-resolution image.")
    path: str = Field(description="Absolute path of the saved file.")
    mime_type: str
    width: int
    height: int
    size_bytes: int
    seed: int = Field(description="The seed this image was actually generated with.")
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
        attempts=list(result.attempts),
        adjustments=list(result.adjustments),
        details=dict(result.details),
    )


def summary(result: GenerationResult) -> str:
    """What happened, in a few lines: the model, the time and cost, any fallback or change, the saved files."""
    count = len(result.images)
    lines = [
        f"Generated {count} image{'s' if count > 1 else ''} with {result.model_id} "
        f"in {result.elapsed_ms / 1000:.1f} s" + (f" (cost ${result.cost:.4f})" if result.cost is not None else "")
    ]
    skipped_or_failed = [a for a in result.attempts if a.outcome != "succeeded"]
    if skipped_or_failed:
        lines.append("Fallback: " + "; ".join(attempt.describe() for attempt in skipped_or_failed))
    lines += [f"Note: {note}" for note in result.adjustments]
    for saved in result.images:
        image = saved.stored
        lines.append(f"{image.path} ({image.width}x{image.height}, seed {saved.seed}) -> {image.uri}")
    return "\n".join(lines)


def recent(results: list[GenerationResult]) -> list[dict[str, Any]]:
    return [generation_output(result).model_dump(mode="json") for result in results]
