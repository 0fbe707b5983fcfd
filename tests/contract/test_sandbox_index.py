"""Contract of the running-sandbox index that server replicas share: a name is held by one running sandbox
of an app at a time (whichever replica asks), listing is newest first and per app, a sandbox that ended
frees its name and leaves the listing, and a terminate request is seen by the replica that asks about its
own sandboxes."""

from __future__ import annotations

from berth.store.factory import Stores


async def test_names_are_unique_among_an_apps_running_sandboxes_across_replicas(
    stores: Stores, replica: Stores
) -> None:
    a, b = stores.core, replica.core
    assert await a.add_sandbox("sb-1", "ap-1", "web", 1.0) is None
    assert await b.add_sandbox("sb-2", "ap-1", "web", 2.0) == "sb-1"  # the other replica sees the holder
    assert await b.add_sandbox("sb-3", "ap-2", "web", 3.0) is None  # another app: its own names
    assert await b.add_sandbox("sb-4", "ap-1", "", 4.0) is None  # unnamed ones never clash
    assert await b.add_sandbox("sb-5", "ap-1", "", 5.0) is None
    assert await b.running_sandbox_named("ap-1", "web") == "sb-1"
    assert await a.running_sandbox_named("ap-1", "nope") is None
    assert await b.running_sandboxes("ap-1") == ["sb-5", "sb-4", "sb-1"]
    assert await a.running_sandboxes("") == ["sb-5", "sb-4", "sb-3", "sb-1"]
    await a.end_sandbox("sb-1", 6.0)
    assert await b.running_sandbox_named("ap-1", "web") is None
    assert await b.running_sandboxes("ap-1") == ["sb-5", "sb-4"]
    assert await b.add_sandbox("sb-6", "ap-1", "web", 7.0) is None  # the name is free again
    assert await a.running_sandbox_named("ap-1", "web") == "sb-6"


async def test_a_terminate_request_reaches_the_replica_that_runs_the_sandbox(stores: Stores, replica: Stores) -> None:
    a, b = stores.core, replica.core
    for sandbox_id in ("sb-1", "sb-2", "sb-3"):
        assert await a.add_sandbox(sandbox_id, "ap-1", "", 1.0) is None
    assert await a.sandbox_stops_requested(["sb-1", "sb-2", "sb-3"]) == []
    assert await b.request_sandbox_stop("sb-2", 2.0)
    assert await b.request_sandbox_stop("sb-2", 3.0)  # asked twice: still one request
    assert await a.sandbox_stops_requested(["sb-1", "sb-2", "sb-3"]) == ["sb-2"]
    assert await a.sandbox_stops_requested([]) == []
    await a.end_sandbox("sb-2", 4.0)
    assert await a.sandbox_stops_requested(["sb-2"]) == []
    assert not await b.request_sandbox_stop("sb-2", 5.0)  # ended: nothing to stop
    assert not await b.request_sandbox_stop("sb-unknown", 5.0)
