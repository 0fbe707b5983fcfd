"""Contract of environment roles: one role per (environment, token), replaced by a later assignment, seen by
every replica, and removed to fall back to the token's default."""

from __future__ import annotations

from berth.store.factory import Stores


async def test_a_role_is_replaced_seen_by_other_replicas_and_removed(stores: Stores, replica: Stores) -> None:
    a, b = stores.core, replica.core
    assert await a.environment_roles() == []
    await a.set_environment_role("main", "ak-1", "viewer")
    await a.set_environment_role("dev", "ak-1", "contributor")
    await b.set_environment_role("main", "ak-1", "no-access")
    await b.set_environment_role("main", "ak-2", "viewer")
    assert await a.environment_roles() == [
        ("dev", "ak-1", "contributor"),
        ("main", "ak-1", "no-access"),
        ("main", "ak-2", "viewer"),
    ]
    await b.set_environment_role("main", "ak-1", None)
    await b.set_environment_role("main", "ak-missing", None)
    assert await a.environment_roles() == [("dev", "ak-1", "contributor"), ("main", "ak-2", "viewer")]
