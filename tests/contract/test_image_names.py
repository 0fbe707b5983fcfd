"""Named images on every backend: a name's history as a state object, appended with compare-and-set, so
concurrent publishes all land; listing, paging and deleting."""

from __future__ import annotations

import asyncio

from modal_proto import api_pb2

from berth.services.image_names import ImageNames
from berth.store.factory import Stores


class SteppingClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def now(self) -> float:
        self.t += 1.0
        return self.t

    def monotonic(self) -> float:
        return self.t


async def test_concurrent_publishes_all_land_in_the_history_and_the_last_one_wins(stores: Stores) -> None:
    names = ImageNames(stores.state, SteppingClock())
    await asyncio.gather(*(names.publish(f"im-{i}", "app", "main", "tester") for i in range(8)))
    history = await names.revisions(api_pb2.ImageTagRevisionsRequest(tag="app"), "main")
    assert sorted(item.image_id for item in history.items) == [f"im-{i}" for i in range(8)]
    assert history.tag == "main/app:latest"
    assert await names.resolve("app:latest", "main") == history.items[0].image_id  # newest first


async def test_names_list_by_prefix_and_page_and_delete_returns_their_images(stores: Stores) -> None:
    names = ImageNames(stores.state, SteppingClock())
    for tag, image_id in (("web:v1", "im-a"), ("web:v2", "im-b"), ("worker", "im-c"), ("web:v1", "im-d")):
        await names.publish(image_id, tag, "main", "tester")
    await names.publish("im-e", "other/web:v1", "main", "tester")  # another environment, by prefix

    page = await names.list_tags(api_pb2.ImageListTagsRequest(tag_prefix="web", max_objects=1), "main")
    rest = await names.list_tags(
        api_pb2.ImageListTagsRequest(tag_prefix="web", max_objects=1, page_token=page.next_page_token), "main"
    )
    assert [(i.tag, i.image_id) for i in [*page.items, *rest.items]] == [("web:v1", "im-d"), ("web:v2", "im-b")]
    assert rest.next_page_token == ""
    assert await names.named_image_ids(["main"]) == {"im-b", "im-c", "im-d"}
    assert await names.resolve("web:v1", "other") == "im-e"

    assert await names.delete("web:v1", "main") == {"im-a", "im-d"}
    assert await names.named_image_ids(["main", "other"]) == {"im-b", "im-c", "im-e"}
