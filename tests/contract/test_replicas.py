"""Contract of several server replicas on one database: replicas beat, a restart replaces its earlier
incarnation, and the tasks of a replica that stopped beating give their leases back. Also the app
heartbeats any replica may receive."""

from __future__ import annotations

from modal_proto import api_pb2

from berth.store.factory import Stores
from berth.store.records import AppRecord, CallRecord, ReplicaRecord, TaskRecord


async def _replica(stores: Stores, replica_id: str, name: str, seen: float) -> None:
    await stores.core.join_replica(ReplicaRecord(replica_id, name, seen, seen, b"{}"))


async def test_replicas_beat_and_a_restart_replaces_its_earlier_incarnation(stores: Stores, replica: Stores) -> None:
    await _replica(stores, "rp-a1", "a", 1.0)
    await _replica(replica, "rp-b1", "b", 1.0)
    assert await stores.core.replica_beat("rp-a1", 5.0, b'{"workers": 2}')
    assert [(r.replica_id, r.seen_at, r.info) for r in await replica.core.live_replicas(2.0)] == [
        ("rp-a1", 5.0, b'{"workers": 2}')
    ]
    await _replica(stores, "rp-a2", "a", 6.0)  # "a" restarted
    assert not await stores.core.replica_beat("rp-a1", 7.0, b"{}")  # the old incarnation is gone
    assert sorted(r.replica_id for r in await stores.core.live_replicas(0.0)) == ["rp-a2", "rp-b1"]
    await replica.core.leave_replica("rp-b1")
    assert [r.replica_id for r in await stores.core.live_replicas(0.0)] == ["rp-a2"]


async def test_a_dead_replicas_tasks_end_and_their_leases_go_back_without_an_attempt(
    stores: Stores, replica: Stores
) -> None:
    core = stores.core
    await _replica(stores, "rp-live", "live", 10.0)
    await _replica(replica, "rp-dead", "dead", 1.0)
    await core.create_call(CallRecord("fc-1", "fu-1", 2, 7, False, 0, False, 0.0))
    await core.add_inputs("fc-1", "fu-1", [(f"in-{i}", i, "", b"p") for i in range(4)], now=1.0)
    await core.put_task(TaskRecord("ta-live", "fu-1", "ap-1", "running", "h", 1.0, replica_id="rp-live"))
    await core.put_task(TaskRecord("ta-dead", "fu-1", "ap-1", "running", "h", 1.0, replica_id="rp-dead"))
    await core.claim_inputs("fu-1", "ta-live", 2, now=2.0, timeout_s=None)
    await core.claim_inputs("fu-1", "ta-dead", 2, now=2.0, timeout_s=None)

    assert await replica.core.release_orphans(seen_after=5.0, now=11.0) == ["fu-1"]

    assert len(await core.inputs_held_by("ta-live")) == 2
    assert await core.inputs_held_by("ta-dead") == []
    assert await core.queued_counts(now=12.0) == {"fu-1": 2}
    assert all(s.attempt == 0 for s in await core.queued_inputs_of_function("fu-1"))
    dead = await core.get_task("ta-dead")
    assert dead is not None and (dead.state, dead.ended_at) == ("lost", 11.0)
    live = await core.get_task("ta-live")
    assert live is not None and live.ended_at is None and live.replica_id == "rp-live"
    assert [r.replica_id for r in await core.live_replicas(0.0)] == ["rp-live"]
    assert await core.release_orphans(seen_after=5.0, now=12.0) == []  # nothing left to release


async def test_app_heartbeats_from_any_replica_decide_which_apps_are_silent(stores: Stores, replica: Stores) -> None:
    core = stores.core
    for app_id, state in [
        ("ap-eph", api_pb2.APP_STATE_EPHEMERAL),
        ("ap-init", api_pb2.APP_STATE_INITIALIZING),
        ("ap-dep", api_pb2.APP_STATE_DEPLOYED),
    ]:
        await core.put_app(AppRecord(app_id, "", "", state, "main", 1.0))
    assert sorted(await core.silent_apps(before=5.0)) == ["ap-eph", "ap-init"]
    await replica.core.app_heartbeat("ap-eph", 6.0)
    assert await core.silent_apps(before=5.0) == ["ap-init"]
    await core.put_app(AppRecord("ap-eph", "renamed", "", api_pb2.APP_STATE_EPHEMERAL, "main", 1.0))
    assert await core.silent_apps(before=5.0) == ["ap-init"]  # a re-put keeps the last heartbeat
    await replica.core.touch_live_apps(20.0)
    assert await core.silent_apps(before=10.0) == []


async def test_open_tasks_count_every_replicas_unended_tasks_of_a_function(stores: Stores, replica: Stores) -> None:
    await stores.core.put_task(TaskRecord("ta-1", "fu-1", "ap-1", "running", "h", 1.0, replica_id="rp-a"))
    await replica.core.put_task(TaskRecord("ta-2", "fu-1", "ap-1", "starting", "h", 1.0, replica_id="rp-b"))
    await replica.core.put_task(TaskRecord("ta-3", "fu-2", "ap-1", "running", "h", 1.0, replica_id="rp-b"))
    assert await stores.core.open_tasks("fu-1") == 2
    await replica.core.end_task("ta-2", "stopped", 3.0, None)
    assert await stores.core.open_tasks("fu-1") == 1
    assert await stores.core.open_tasks("fu-missing") == 0
