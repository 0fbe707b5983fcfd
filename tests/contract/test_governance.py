"""Contract of the governance store (metered usage, rates, app tags, audit log, quotas), on every backend."""

from __future__ import annotations

from berth.store.factory import Stores
from berth.store.governance_records import AuditEntry, Quota, UsageRow


def _row(task: str, bucket: int, cpu: float, tags: dict[str, str] | None = None) -> UsageRow:
    return UsageRow(task, bucket, "fu-1", "ap-1", "fu-1", "main", "app.f", tags or {}, "", cpu, 2.0 * cpu, 0.0)


async def test_usage_of_one_task_and_minute_adds_up_and_the_latest_tags_win(stores: Stores) -> None:
    gov = stores.governance
    await gov.add_usage([_row("ta-1", 60, 1.5, {"team": "a"}), _row("ta-2", 60, 0.25)])
    await gov.add_usage([_row("ta-1", 60, 0.5, {"team": "b"}), _row("ta-1", 120, 3.0)])
    rows = await gov.usage_between(0, 180)
    assert [(r.task_id, r.bucket, r.cpu_s, r.memory_gib_s) for r in rows] == [
        ("ta-1", 60, 2.0, 4.0),
        ("ta-2", 60, 0.25, 0.5),
        ("ta-1", 120, 3.0, 6.0),
    ]
    assert rows[0].tags == {"team": "b"}
    assert [r.bucket for r in await gov.usage_between(61, 180)] == [120]
    assert [r.bucket for r in await gov.usage_between(0, 120)] == [60, 60]


async def test_rates_are_set_replaced_and_removed(stores: Stores) -> None:
    gov = stores.governance
    assert await gov.rates() == {}
    await gov.set_rates({"cpu": "0.0001", "gpu:A100": "0.001"})
    await gov.set_rates({"cpu": "0.0002", "gpu:A100": ""})
    assert await gov.rates() == {"cpu": "0.0002"}


async def test_app_tags_are_replaced_whole(stores: Stores) -> None:
    gov = stores.governance
    assert await gov.app_tags("ap-1") == {}
    await gov.set_app_tags("ap-1", {"team": "a", "project": "x"})
    await gov.set_app_tags("ap-1", {"team": "b"})
    assert await gov.app_tags("ap-1") == {"team": "b"}


async def test_audit_entries_come_newest_first_in_pages_within_a_window(stores: Stores) -> None:
    gov = stores.governance
    for i in range(5):
        await gov.append_audit(AuditEntry(f"al-{i}", 10.0 + i, "ak-1", "secret.create", "secret", f"s{i}"))
    page = await gov.audit_entries(0, 100, 2)
    assert [e.entry_id for e in page] == ["al-4", "al-3"]
    assert page[0].actor == "ak-1" and page[0].details == {}
    rest = await gov.audit_entries(0, 100, 10, before_seq=page[-1].seq)
    assert [e.entry_id for e in rest] == ["al-2", "al-1", "al-0"]
    assert [e.entry_id for e in await gov.audit_entries(11, 13, 10)] == ["al-2", "al-1"]
    assert await gov.count_audit(11, 13) == 2 and await gov.count_audit(0, 100) == 5


async def test_quotas_are_set_per_scope_and_removed_with_a_negative_limit(stores: Stores) -> None:
    gov = stores.governance
    await gov.set_quota(Quota("workspace", "containers", 10))
    await gov.set_quota(Quota("env:main", "sandboxes", 2))
    await gov.set_quota(Quota("env:main", "sandboxes", 3))
    assert await gov.quotas() == [Quota("env:main", "sandboxes", 3), Quota("workspace", "containers", 10)]
    await gov.set_quota(Quota("workspace", "containers", -1))
    assert await gov.quotas() == [Quota("env:main", "sandboxes", 3)]
