"""What the history shows: image search, recent generations, one generation, deletion, and what was spent.

Search results are small records (ids, URIs, prompts, a few numbers), never image bytes, so that an agent can
find "the lighthouse from yesterday" and pass its URI to an edit for a few hundred bytes of context.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

import anyio
from pydantic import BaseModel, ConfigDict, Field, field_validator

from imagegen_mcp.errors import InvalidRequestError, NotFoundError
from imagegen_mcp.history import HistoryStore, ImageRecord
from imagegen_mcp.storage import IMAGE_ID_PATTERN, URI_PREFIX, ImageStore

logger = logging.getLogger(__name__)

SEARCH_LIMIT = 100


class SearchImagesArgs(BaseModel):
    """The arguments of ``search_images``."""

    model_config = ConfigDict(extra="forbid")

    query: str | None = Field(
        None, max_length=500, description="Words of the prompt; the last may be unfinished. Omit to list all."
    )
    provider: str | None = Field(None, description="Only this provider's images.")
    model: str | None = Field(None, description="Only this model's images ('provider:key').")
    since: datetime | None = Field(None, description="Made at or after this time (ISO 8601).")
    until: datetime | None = Field(None, description="Made before this time (ISO 8601).")
    limit: int = Field(20, ge=1, le=SEARCH_LIMIT, description="How many, newest first.")

    @field_validator("since", "until", mode="after")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        """A time without a zone is the server's local time."""
        return value.astimezone() if value is not None and value.tzinfo is None else value


class ImageSummary(BaseModel):
    id: str
    uri: str
    prompt: str
    model: str
    seed: int | None
    width: int
    height: int
    created_at: str
    job_id: str


class SearchImagesOutput(BaseModel):
    images: list[ImageSummary]


class DeleteImageArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    image_id: str = Field(description="The id of an image (from a result or search_images).")


class DeleteImageOutput(BaseModel):
    deleted: ImageSummary
    file_removed: bool = Field(description="False when the file was already gone.")


def summary_of(record: ImageRecord) -> ImageSummary:
    return ImageSummary(
        id=record.image_id,
        uri=record.uri,
        prompt=record.prompt,
        model=record.model,
        seed=record.seed,
        width=record.width,
        height=record.height,
        created_at=record.created_at.isoformat(timespec="seconds"),
        job_id=record.job_id,
    )


async def search(history: HistoryStore, args: SearchImagesArgs) -> SearchImagesOutput:
    records = await history.search_images(
        args.query, provider=args.provider, model=args.model, since=args.since, until=args.until, limit=args.limit
    )
    return SearchImagesOutput(images=[summary_of(record) for record in records])


def search_text(output: SearchImagesOutput) -> str:
    if not output.images:
        return "No image matches."
    lines = [f"{len(output.images)} image(s), newest first:"]
    lines += [f"{image.uri} {image.created_at} {image.model}: {image.prompt[:120]}" for image in output.images]
    return "\n".join(lines)


async def delete(history: HistoryStore, store: ImageStore, image_id: str) -> DeleteImageOutput:
    """Remove a stored image's file and mark its history row deleted. Only an id names the file, and only
    under the output root, so nothing else can be touched."""
    image_id = image_id.removeprefix(URI_PREFIX)
    if not IMAGE_ID_PATTERN.match(image_id):
        raise InvalidRequestError(
            f"{image_id[:80]!r} is not an image id; ids look like '20261201T120000Z-0a1b2c3d'.",
            remediation=["Pass the id of an image from a result or from search_images"],
        )
    record = await history.delete_image(image_id)
    if record is None:
        raise NotFoundError(
            f"No image {image_id!r} in the history.", remediation=["Call search_images to find an image's id"]
        )
    path = store.path_for(image_id)
    removed = await anyio.to_thread.run_sync(_remove, path)
    logger.info("deleted image %s (%s)", image_id, "file removed" if removed else "file already gone")
    return DeleteImageOutput(deleted=summary_of(record), file_removed=removed)


def _remove(path: Path) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True
