"""Contract of tokens, apps, functions and classes, generic objects and tasks, on every backend."""

from __future__ import annotations

import asyncio

from berth.store.factory import Stores
from berth.store.records import AppRecord, FunctionRecord, TaskRecord


async def test_service_users_are_named_tokens_that_expire_and_any_token_can_be_disabled_and_enabled(
    stores: Stores,
) -> None:
    core = stores.core
    assert await core.add_service_user("ak-1", "hash-1", "ci-bot", 1.0, 10.0) is True
    assert await core.add_service_user("ak-2", "hash-2", "ci-bot", 2.0, None) is False  # the name is taken
    await core.add_token("ak-3", "hash-3", None, 3.0)
    assert await core.token("ak-1", 9.0) == ("hash-1", "")
    assert await core.token("ak-1", 10.0) is None  # expired
    assert await core.set_token_disabled("ak-3", 4.0) is True
    assert await core.token("ak-3", 5.0) is None
    assert await core.set_token_disabled("ak-3", None) is True
    assert await core.token("ak-3", 5.0) == ("hash-3", "")
    assert await core.set_token_disabled("ak-missing", 5.0) is False
    records = {r.token_id: r for r in await core.token_records()}
    assert (records["ak-1"].name, records["ak-1"].expires_at, records["ak-3"].name) == ("ci-bot", 10.0, None)
    assert await core.revoke_token("ak-1", 6.0) is True
    assert await core.add_service_user("ak-4", "hash-4", "ci-bot", 7.0, None) is True  # a revoked one frees it


async def test_a_token_is_found_until_it_is_revoked_once(stores: Stores) -> None:
    core = stores.core
    await core.add_token("ak-1", "hash-1", None, 1.0)
    await core.add_token("ak-2", "hash-2", "dev", 2.0)
    assert await core.token("ak-1", 2.0) == ("hash-1", "")
    assert await core.token("ak-2", 2.0) == ("hash-2", "dev")
    assert await core.revoke_token("ak-1", 3.0) is True
    assert await core.revoke_token("ak-1", 4.0) is False
    assert await core.revoke_token("ak-missing", 4.0) is False
    assert await core.token("ak-1", 5.0) is None
    assert await core.tokens() == [("ak-1", "", 1.0, 3.0), ("ak-2", "dev", 2.0, None)]


async def test_an_app_is_replaced_by_a_put_and_changes_state(stores: Stores) -> None:
    core = stores.core
    app = AppRecord("ap-1", "web", "desc", 1, "main", 10.0)
    await core.put_app(app)
    assert await core.get_app("ap-1") == app
    await core.put_app(AppRecord("ap-1", "web2", "", 2, "dev", 11.0, 12.0))
    assert await core.get_app("ap-1") == AppRecord("ap-1", "web2", "", 2, "dev", 11.0, 12.0)
    await core.set_app_state("ap-1", 5, stopped_at=20.0)
    got = await core.get_app("ap-1")
    assert got is not None and (got.state, got.stopped_at) == (5, 20.0)
    assert await core.get_app("ap-missing") is None


async def test_deleting_an_app_drops_its_functions_classes_and_layout(stores: Stores) -> None:
    core = stores.core
    await core.put_app(AppRecord("ap-1", "", "", 1, "main", 1.0))
    await core.put_function(FunctionRecord("fu-1", "ap-1", "f", b"def"))
    await core.put_class("cs-1", "ap-1", "C", b"meta")
    await core.put_object("layout", "ap-1", b"layout", 1.0)
    await core.put_function(FunctionRecord("fu-2", "ap-2", "g", b"def"))
    await core.delete_app("ap-1")
    assert await core.get_app("ap-1") is None and await core.get_function("fu-1") is None
    assert await core.get_class("cs-1") is None and await core.get_object("layout", "ap-1") is None
    assert await core.get_function("fu-2") is not None


async def test_functions_round_trip_and_a_bound_function_is_found_by_its_parameters(stores: Stores) -> None:
    core = stores.core
    fn = FunctionRecord("fu-1", "ap-1", "f", b"\x00def")
    bound = FunctionRecord("fu-2", "ap-1", "f", b"def", bound_from="fu-1", serialized_params=b"\x01p", options=b"o")
    await core.put_function(fn)
    await core.put_function(bound)
    assert await core.get_function("fu-1") == fn and await core.get_function("fu-2") == bound
    assert await core.find_bound_function("fu-1", b"\x01p", b"o") == "fu-2"
    assert await core.find_bound_function("fu-1", b"\x01p", b"") is None
    await core.put_function(FunctionRecord("fu-1", "ap-1", "f", b"new"))
    assert (await core.get_function("fu-1")).definition == b"new"  # type: ignore[union-attr]


async def test_a_class_round_trips_and_is_replaced_by_a_put(stores: Stores) -> None:
    core = stores.core
    await core.put_class("cs-1", "ap-1", "C", b"m1")
    await core.put_class("cs-1", "ap-2", "C", b"m2")
    assert await core.get_class("cs-1") == ("ap-2", b"m2")
    assert await core.get_class("cs-missing") is None


async def test_objects_are_found_by_id_and_kind_and_by_content_key(stores: Stores) -> None:
    core = stores.core
    await core.put_object("mount", "mo-1", b"body", 1.0, key="sha-1", name="m", environment="main", app_id="ap-1")
    assert await core.get_object("mount", "mo-1") == b"body"
    assert await core.get_object("image", "mo-1") is None
    assert await core.object_by_key("mount", "sha-1") == ("mo-1", b"body")
    assert await core.object_by_key("image", "sha-1") is None
    await core.put_object("mount", "mo-1", b"body2", 2.0, key="sha-1")
    assert await core.object_by_key("mount", "sha-1") == ("mo-1", b"body2")


async def test_a_new_object_under_a_taken_content_key_replaces_the_old_one(stores: Stores) -> None:
    core = stores.core
    await core.put_object("image", "im-1", b"a", 1.0, key="k")
    await core.put_object("image", "im-2", b"b", 2.0, key="k")
    assert await core.object_by_key("image", "k") == ("im-2", b"b")
    assert await core.get_object("image", "im-1") is None


async def test_a_task_ends_keeps_its_result_and_stale_tasks_are_stopped(stores: Stores) -> None:
    core = stores.core
    task = TaskRecord("ta-1", "fu-1", "ap-1", "running", "hash", 1.0)
    await core.put_task(task)
    assert await core.get_task("ta-1") == task
    await core.set_task_result("ta-1", b"res")
    await core.end_task("ta-1", "failed", 5.0, None)
    assert await core.get_task("ta-1") == TaskRecord("ta-1", "fu-1", "ap-1", "failed", "hash", 1.0, 5.0)
    await core.put_task(TaskRecord("ta-2", "fu-1", "ap-1", "running", "hash", 2.0))
    await core.end_stale_tasks(9.0)
    ended = await core.get_task("ta-2")
    assert ended is not None and (ended.state, ended.ended_at) == ("stopped", 9.0)
    assert (await core.get_task("ta-1")).ended_at == 5.0  # type: ignore[union-attr]
    assert await core.get_task("ta-missing") is None


async def test_concurrent_puts_under_one_content_key_leave_one_object_and_fail_none(
    stores: Stores, replica: Stores
) -> None:
    puts = [
        (stores, replica)[i % 2].core.put_object("mount", f"mo-{i}", b"%d" % i, 1.0, key="ns/main/app")
        for i in range(10)
    ]
    await asyncio.gather(*puts)
    found = await stores.core.object_by_key("mount", "ns/main/app")
    assert found is not None
    survivors = [i for i in range(10) if await stores.core.get_object("mount", f"mo-{i}") is not None]
    assert survivors == [int(found[0].removeprefix("mo-"))]


async def test_a_dashboard_link_is_redeemed_once_before_it_expires(stores: Stores) -> None:
    core = stores.core
    await core.add_dashboard_grant("d-link", "link", "ak-1", 100.0)
    await core.add_dashboard_grant("d-late", "link", "ak-1", 10.0)
    assert await core.redeem_dashboard_link("d-late", 50.0) is None  # expired
    assert await core.redeem_dashboard_link("d-missing", 50.0) is None
    assert await core.redeem_dashboard_link("d-link", 50.0) == "ak-1"
    assert await core.redeem_dashboard_link("d-link", 51.0) is None  # used
    assert await core.dashboard_session("d-link", 51.0) is None  # a link is no session


async def test_a_dashboard_session_lasts_until_it_expires_or_ends(stores: Stores) -> None:
    core = stores.core
    await core.add_dashboard_grant("d-s1", "session", "ak-1", 100.0)
    await core.add_dashboard_grant("d-s2", "session", "ak-2", 100.0)
    assert await core.dashboard_session("d-s1", 50.0) == "ak-1"
    assert await core.redeem_dashboard_link("d-s1", 50.0) is None  # a session is no link
    assert await core.dashboard_session("d-s1", 100.0) is None
    await core.end_dashboard_session("d-s2")
    assert await core.dashboard_session("d-s2", 50.0) is None
