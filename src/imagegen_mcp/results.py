"""A generation result as the structured output every client reads, and as a short text."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from imagegen_mcp.errors import Attempt
from imagegen_mcp.providers.base import EditInputs, LoraSpec
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
    loras: list[LoraSpec] = Field(default_factory=list)


class InputInfo(BaseModel):
    """An input image of an edit: which argument it was, and how to find it again (its id, else its hash)."""

    argument: str
    image_id: str | None
    uri: str | None
    sha256: str
    width: int
    height: int


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
    operation: str = Field("generate", description="generate, image_to_image, inpaint or instruction_edit.")
    inputs: list[InputInfo] = Field(default_factory=list, description="An edit's input images.")


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
            loras=list(job.loras),
        ),
        elapsed_ms=result.elapsed_ms,
        cost_usd=result.cost,
        attempts=list(result.attempts),
        adjustments=list(result.adjustments),
        details=dict(result.details),
        operation=job.edit.operation if job.edit is not None else "generate",
        inputs=input_infos(job.edit),
    )


def input_infos(edit: EditInputs | None) -> list[InputInfo]:
    return [InputInfo.model_validate(record) for record in edit.records()] if edit is not None else []


def summary(output: GenerateImageOutput) -> str:
    """What happened, in a few lines: the model, the time and cost, any fallback or change, the inputs of an
    edit, the saved files."""
    count = len(output.images)
    cost = f" (cost ${output.cost_usd:.4f})" if output.cost_usd is not None else ""
    seconds = output.elapsed_ms / 1000
    lines = [f"Generated {count} image{'s' if count > 1 else ''} with {output.model} in {seconds:.1f} s{cost}"]
    skipped_or_failed = [attempt for attempt in output.attempts if attempt.outcome != "succeeded"]
    if skipped_or_failed:
        lines.append("Fallback: " + "; ".join(attempt.describe() for attempt in skipped_or_failed))
    lines += [f"Note: {note}" for note in output.adjustments]
    if output.inputs:
        sources = ", ".join(image.uri or f"sha256 {image.sha256[:12]}" for image in output.inputs)
        lines.append(f"{output.operation} from {sources}")
    for image in output.images:
        lines.append(f"{image.path} ({image.width}x{image.height}, seed {image.seed}) -> {image.uri}")
    return "\n".join(lines)
