"""Contract of apps by name, deployments, environments and persisted logs, on every backend."""

from __future__ import annotations

from modal_proto import api_pb2

from berth.config import Settings
from berth.store.factory import Stores, open_stores
from berth.store.records import AppRecord, DeploymentRecord, StateObject

DEPLOYED, STOPPED = api_pb2.APP_STATE_DEPLOYED, api_pb2.APP_STATE_STOPPED
EPHEMERAL, INITIALIZING = api_pb2.APP_STATE_EPHEMERAL, api_pb2.APP_STATE_INITIALIZING


async def test_the_deployed_app_of_a_name_is_the_newest_deployed_one(stores: Stores) -> None:
    core, history = stores.core, stores.history
    await core.put_app(AppRecord("ap-1", "web", "", DEPLOYED, "main", 1.0))
    await core.put_app(AppRecord("ap-2", "web", "", DEPLOYED, "main", 2.0))
    await core.put_app(AppRecord("ap-3", "web", "", STOPPED, "main", 3.0))
    await core.put_app(AppRecord("ap-4", "web", "", DEPLOYED, "dev", 4.0))
    assert (await history.deployed_app("main", "web")).app_id == "ap-2"  # type: ignore[union-attr]
    assert (await history.last_app_named("main", "web")).app_id == "ap-3"  # type: ignore[union-attr]
    assert await history.deployed_app("main", "other") is None
    assert await history.last_app_named("other-env", "web") is None


async def test_listed_apps_skip_initializing_ones_and_running_apps_are_the_live_kinds(stores: Stores) -> None:
    core, history = stores.core, stores.history
    await core.put_app(AppRecord("ap-1", "", "", EPHEMERAL, "main", 1.0))
    await core.put_app(AppRecord("ap-2", "", "", INITIALIZING, "main", 2.0))
    await core.put_app(AppRecord("ap-3", "x", "", DEPLOYED, "main", 3.0))
    await core.put_app(AppRecord("ap-4", "", "", STOPPED, "dev", 4.0))
    assert [a.app_id for a in await history.list_apps("main")] == ["ap-1", "ap-3"]
    assert sorted(a.app_id for a in await history.running_apps()) == ["ap-1", "ap-2"]


async def test_deployments_of_an_app_are_listed_by_version(stores: Stores) -> None:
    history = stores.history
    v3 = DeploymentRecord("ap-1", 3, 30.0, "", "1.6.4", 2, b"", b"snap2", api_pb2.DEPLOYMENT_TYPE_PROMOTION)
    v2 = DeploymentRecord("ap-1", 2, 20.0, "t2", "1.6.4", 0, b"", b"snap2", api_pb2.DEPLOYMENT_TYPE_STAGED)
    v1 = DeploymentRecord("ap-1", 1, 10.0, "t1", "1.6.4", 0, b"commit", b"snap1", api_pb2.DEPLOYMENT_TYPE_STANDARD)
    await history.add_deployment(v2)
    await history.add_deployment(v3)
    await history.add_deployment(v1)
    await history.add_deployment(DeploymentRecord("ap-2", 1, 1.0, "", "", 0, b"", b"s", 1))
    assert await history.deployments("ap-1") == [v1, v2, v3]
    assert await history.deployments("ap-missing") == []


async def test_an_environment_is_added_once_and_deleted_once(stores: Stores) -> None:
    history = stores.history
    assert await history.add_environment("dev", 1.0) is True
    assert await history.add_environment("dev", 2.0) is False
    assert await history.add_environment("alpha", 3.0) is True
    assert await history.environments() == [("alpha", 3.0), ("dev", 1.0)]
    assert await history.delete_environment("dev") is True
    assert await history.delete_environment("dev") is False


async def test_logs_written_synchronously_are_read_back_in_order_within_the_window(stores: Stores) -> None:
    history = stores.history
    for i in range(20):
        history.add_log_now("ap-1", 100.0 + i, b"batch-%d" % i)
    history.add_log_now("ap-2", 105.0, b"other app")
    rows = await history.logs_between("ap-1", 105.0, 110.0, 100)
    assert rows == [(100.0 + i, b"batch-%d" % i) for i in range(5, 10)]
    assert [b for _, b in await history.logs_between("ap-1", 0.0, 1000.0, 3)] == [b"batch-17", b"batch-18", b"batch-19"]
    assert sorted(await history.log_times("ap-1", 118.0, 1000.0)) == [118.0, 119.0]


async def test_logs_queued_just_before_close_are_kept(settings: Settings) -> None:
    stores = await open_stores(settings)
    for i in range(5):
        stores.history.add_log_now("ap-1", float(i), b"%d" % i)
    await stores.close()
    reopened = await open_stores(settings)
    try:
        kept = await reopened.history.logs_between("ap-1", 0.0, 10.0, 10)
        assert [b for _, b in kept] == [b"0", b"1", b"2", b"3", b"4"]
    finally:
        await reopened.close()


async def test_renaming_an_environment_moves_its_apps_tokens_objects_and_roles_along(stores: Stores) -> None:
    core, history, state = stores.core, stores.history, stores.state
    assert await history.add_environment("dev", 1.0) is True
    await core.put_app(AppRecord("ap-1", "web", "", DEPLOYED, "dev", 1.0))
    await core.put_app(AppRecord("ap-2", "web", "", DEPLOYED, "main", 2.0))
    await core.add_token("ak-1", "hash", "dev", 1.0)
    await core.set_environment_role("dev", "ak-2", "viewer")
    await state.put(StateObject("di-1", "dict", "d", "dev", False, None, 0, None, 1.0, 1.0))
    assert await history.rename_environment("dev", "prod") is True
    assert await history.rename_environment("dev", "other") is False
    assert await history.environments() == [("prod", 1.0)]
    assert (await history.deployed_app("prod", "web")).app_id == "ap-1"  # type: ignore[union-attr]
    assert (await history.deployed_app("main", "web")).app_id == "ap-2"  # type: ignore[union-attr]
    assert await core.token("ak-1", 2.0) == ("hash", "prod")
    assert await core.environment_roles() == [("prod", "ak-2", "viewer")]
    assert (await state.by_name("dict", "prod", "d")).object_id == "di-1"  # type: ignore[union-attr]
