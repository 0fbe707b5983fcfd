"""Collecting images nothing names or uses: when a name is deleted (its images lose that name) or an image
is deleted, those images are dropped from the workers unless a name still points at them or a live app's
function or a running sandbox uses them, and their layers go unless another image on the host shares them
(the worker decides that, from every manifest on its host: worker/layers.py)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from berth.errors import FailedPrecondition
from berth.services.image_names import ImageNames
from berth.services.images import ImageService
from berth.workers.port import WorkerPort

log = logging.getLogger("berth.images")

ImagesInUse = Callable[[], Awaitable[set[str]]]
Environments = Callable[[], Awaitable[list[str]]]


@dataclass
class Collection:
    kept: set[str] = field(default_factory=set)  # candidates something still names or uses
    dropped: set[str] = field(default_factory=set)
    removed_layers: list[str] = field(default_factory=list)


class ImageCollector:
    def __init__(
        self,
        names: ImageNames,
        images: ImageService,
        worker: WorkerPort,
        images_in_use: ImagesInUse,
        environments: Environments,
    ) -> None:
        self._names = names
        self._images = images
        self._worker = worker
        self._images_in_use = images_in_use
        self._environments = environments

    async def held(self, image_ids: set[str]) -> dict[str, str]:
        """Of these images, those a name or a live app or sandbox holds, with what holds them."""
        named = await self._names.named_image_ids(await self._environments())
        used = await self._images_in_use()
        out = {i: "a name points at it" for i in image_ids & named}
        out.update({i: "a running or deployed app or a sandbox uses it" for i in image_ids & used})
        return out

    async def collect(self, candidates: set[str]) -> Collection:
        held = await self.held(candidates)
        result = Collection(kept=set(held), dropped=candidates - set(held))
        for image_id in result.dropped:  # collected: gone for from_id and functions too
            await self._images.mark_deleted(image_id)
        if result.dropped:
            result.removed_layers = await self._worker.forget_images(sorted(result.dropped))
            dropped = ", ".join(sorted(result.dropped))
            log.info("collected images %s: %d layer(s) removed", dropped, len(result.removed_layers))
        return result

    async def delete_name(self, tag: str, environment: str) -> None:
        """`modal image names delete`: the name goes, and so do its images that nothing else holds. The name
        is deleted whatever the collection does."""
        candidates = await self._names.delete(tag, environment)
        try:
            await self.collect(candidates)
        except Exception:
            log.exception("collecting images %s failed", ", ".join(sorted(candidates)))

    async def delete_image(self, image_id: str) -> None:
        """ImageDelete: refused while a name or a live app holds the image; otherwise it is gone (from_id and
        functions no longer find it) and so are its layers that no other image shares."""
        await self._images.from_id(image_id)
        held = await self.held({image_id})
        if held:
            raise FailedPrecondition(f"Image {image_id} cannot be deleted: {held[image_id]}")
        await self.collect({image_id})
