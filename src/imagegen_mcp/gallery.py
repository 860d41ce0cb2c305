"""What the image viewer and gallery read beyond search: small thumbnails, and one image's details (the request
that made it, its generation's result, the images it was edited from and those edited from it).

Thumbnails are made from the stored PNG on first use and kept in memory (an image never changes once saved), so a
grid of a hundred images costs a few hundred kilobytes instead of a few hundred megabytes of full PNGs.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from typing import Any

from PIL import Image
from pydantic import BaseModel

from imagegen_mcp.archive import ImageSummary, summary_of
from imagegen_mcp.errors import NotFoundError
from imagegen_mcp.history import HistoryStore, LinkedImage, ParentRole
from imagegen_mcp.storage import ImageStore, fit_within

THUMBNAIL_PX = 256
THUMBNAIL_MIME = "image/webp"
#: About 10 KB each: a thousand thumbnails hold 10 MB.
THUMBNAIL_CACHE_SIZE = 1000


class LinkedSummary(BaseModel):
    """A parent or child of an image; ``image`` is ``None`` when the history has no live row for it."""

    image_id: str
    role: ParentRole
    image: ImageSummary | None


class ImageDetails(BaseModel):
    image: ImageSummary
    provider: str
    cost_usd: float | None
    #: The arguments of the call that made it, as the history keeps them (data URIs shortened).
    request: dict[str, Any]
    #: The generation's result, as ``generate_image`` returned it; ``None`` when the history has none.
    result: dict[str, Any] | None
    #: The images it was edited from (image, mask, references), in order.
    parents: list[LinkedSummary]
    #: The images edited from it, oldest first.
    children: list[LinkedSummary]


async def image_details(history: HistoryStore, image_id: str) -> ImageDetails:
    record = await history.get_image(image_id)
    if record is None or record.deleted_at is not None:
        raise NotFoundError(f"No image {image_id!r} in the history.", remediation=["Call search_images"])
    job = await history.get_job(record.job_id)
    parents = await history.parents_of(image_id)
    children = await history.children_of(image_id)
    return ImageDetails(
        image=summary_of(record),
        provider=record.provider,
        cost_usd=record.cost_usd,
        request=job.request if job is not None else {},
        result=job.result if job is not None else None,
        parents=[_linked(link) for link in parents],
        children=[_linked(link) for link in children if link.image is not None and link.image.deleted_at is None],
    )


def _linked(link: LinkedImage) -> LinkedSummary:
    live = link.image is not None and link.image.deleted_at is None
    return LinkedSummary(
        image_id=link.image_id, role=link.role, image=summary_of(link.image) if link.image and live else None
    )


class Thumbnails:
    """Small WebP images of stored images, made on first use and kept (least recently used dropped first)."""

    def __init__(self, store: ImageStore, max_px: int = THUMBNAIL_PX, cache_size: int = THUMBNAIL_CACHE_SIZE) -> None:
        self.store = store
        self.max_px = max_px
        self.cache_size = cache_size
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, image_id: str) -> bytes:
        """The thumbnail of a stored image. Blocking (decodes the PNG the first time): run it in a worker thread.

        Raises FileNotFoundError for an id that is not a stored image's."""
        with self._lock:
            if image_id in self._cache:
                self._cache.move_to_end(image_id)
                return self._cache[image_id]
        data = self._make(image_id)
        with self._lock:
            self._cache[image_id] = data
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return data

    def _make(self, image_id: str) -> bytes:
        buffer = io.BytesIO()
        with Image.open(self.store.path_for(image_id)) as image:
            fit_within(image, self.max_px, keep_alpha=True).save(buffer, format="WEBP", quality=60, method=0)
        return buffer.getvalue()
