"""Contract of the autoscaler overrides: one configuration per function, replaced by a later update, seen by
every replica (and so by a restarted server), and gone once deleted (a redeploy)."""

from __future__ import annotations

from berth.store.factory import Stores


async def test_an_override_is_replaced_seen_by_other_replicas_and_deleted(stores: Stores, replica: Stores) -> None:
    a, b = stores.core, replica.core
    assert await a.autoscaler_overrides() == {}
    await a.put_autoscaler_override("fu-1", b"first", 1.0)
    await a.put_autoscaler_override("fu-2", b"other", 1.0)
    await b.put_autoscaler_override("fu-1", b"second", 2.0)
    assert await a.autoscaler_overrides() == {"fu-1": b"second", "fu-2": b"other"}
    await b.delete_autoscaler_override("fu-1")
    await b.delete_autoscaler_override("fu-missing")
    assert await a.autoscaler_overrides() == {"fu-2": b"other"}
