"""Named images: `Image.publish(name)`, `Image.from_name(name)` and `modal image names list|history|delete`.
A name (`name:tag` in one environment) is a state object of kind 'image_name' whose body is its publishing
history, oldest first; the newest revision is the image the name points at. Publishing appends a revision
with compare-and-set, so two concurrent publishes both land in the history. Deleting a name drops it and
its history; the image itself stays (Modal's semantics) until the image collector finds nothing uses it."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from modal_proto import api_pb2

from berth.clock import Clock
from berth.errors import InvalidArgument, NotFound
from berth.ids import new_id
from berth.store.ports import StateObjectStore
from berth.store.records import StateObject

KIND = "image_name"
PAGE = 100
_MAX_NAMES = 100_000


@dataclass
class Revision:
    image_id: str
    revision_id: str
    created_at: float
    published_by: str


def split_tag(tag: str, environment: str) -> tuple[str, str]:
    """'[env/]name[:tag]' → (environment, 'name:tag'); a missing tag is ':latest'."""
    env, sep, name_tag = tag.rpartition("/")
    if "/" in env:
        raise InvalidArgument(f"Invalid Image name {tag!r}: use '[environment/]name[:tag]'")
    if not name_tag:
        raise InvalidArgument("An Image name is required")
    if ":" not in name_tag:
        name_tag += ":latest"
    return (env if sep else environment), name_tag


def _history(obj: StateObject) -> list[Revision]:
    return [Revision(**r) for r in json.loads(obj.body or b"[]")]


def _encode(history: list[Revision]) -> bytes:
    return json.dumps([asdict(r) for r in history]).encode()


def _page(token: str) -> int:
    if token and not token.isdigit():
        raise InvalidArgument(f"Invalid page token {token!r}")
    return int(token or 0)


class ImageNames:
    def __init__(self, store: StateObjectStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    async def publish(self, image_id: str, tag: str, environment: str, published_by: str) -> Revision:
        env, name = split_tag(tag, environment)
        revision = Revision(image_id, new_id("ir"), self._clock.now(), published_by)
        while True:
            obj = await self._store.by_name(KIND, env, name)
            if obj is None:
                now = self._clock.now()
                body = _encode([revision])
                if await self._store.create(StateObject(new_id("in"), KIND, name, env, False, None, 0, body, now, now)):
                    return revision
                continue  # a concurrent publish created the name first: append to it
            if await self._store.set_body_if(obj.object_id, obj.body, _encode([*_history(obj), revision])):
                return revision

    async def _require(self, tag: str, environment: str) -> StateObject:
        env, name = split_tag(tag, environment)
        obj = await self._store.by_name(KIND, env, name)
        if obj is None:
            raise NotFound(f"Image '{name}' not found in environment '{env}'")
        return obj

    async def resolve(self, tag: str, environment: str) -> str:
        """The image a name points at now."""
        return _history(await self._require(tag, environment))[-1].image_id

    async def delete(self, tag: str, environment: str) -> set[str]:
        """Deletes the name and its history; returns the images it ever pointed at."""
        obj = await self._require(tag, environment)
        await self._store.delete(obj.object_id)
        return {r.image_id for r in _history(obj)}

    async def list_tags(self, req: api_pb2.ImageListTagsRequest, environment: str) -> api_pb2.ImageListTagsResponse:
        items = []
        for obj in sorted(await self._store.list_named(KIND, environment, float("inf"), _MAX_NAMES), key=_name):
            history = _history(obj)
            latest = history[-1]
            if not (obj.name or "").startswith(req.tag_prefix) or (req.image_id and latest.image_id != req.image_id):
                continue
            items.append(
                api_pb2.ImageListTagsItem(
                    tag=_name(obj),
                    image_id=latest.image_id,
                    revision_id=latest.revision_id,
                    created_at=obj.created_at,
                    updated_at=latest.created_at,
                    last_published_by=latest.published_by,
                )
            )
        start, size = _page(req.page_token), min(req.max_objects or PAGE, 1000)
        more = start + size < len(items)
        return api_pb2.ImageListTagsResponse(
            items=items[start : start + size],
            next_page_token=str(start + size) if more else "",
            environment_name=environment,
        )

    async def revisions(
        self, req: api_pb2.ImageTagRevisionsRequest, environment: str
    ) -> api_pb2.ImageTagRevisionsResponse:
        """A name's publishing history, newest first."""
        env, name = split_tag(req.tag, environment)
        obj = await self._store.by_name(KIND, env, name)
        history = list(reversed(_history(obj))) if obj is not None else []
        start, size = _page(req.page_token), min(req.max_objects or PAGE, 1000)
        items = [
            api_pb2.ImageTagRevisionsItem(
                image_id=r.image_id, revision_id=r.revision_id, created_at=r.created_at, published_by=r.published_by
            )
            for r in history[start : start + size]
        ]
        more = start + size < len(history)
        return api_pb2.ImageTagRevisionsResponse(
            items=items, next_page_token=str(start + size) if more else "", tag=f"{env}/{name}", environment_name=env
        )

    async def named_image_ids(self, environments: list[str]) -> set[str]:
        """Every image some name points at now (the image collector keeps them)."""
        out = set()
        for env in environments:
            for obj in await self._store.list_named(KIND, env, float("inf"), _MAX_NAMES):
                out.add(_history(obj)[-1].image_id)
        return out


def _name(obj: StateObject) -> str:
    return obj.name or ""
