"""Contract of the ActivityStore (what observability reads) on every backend: an input's times and how it
ended, inputs of functions over a window, the calls an input made, containers alive in a window and
whether they failed, and the variants of a function."""

from __future__ import annotations

from berth.store.factory import Stores
from berth.store.records import CallRecord, FunctionRecord, TaskRecord

SUCCESS, FAILURE = 1, 2


async def _inputs(stores: Stores, call_id: str, function_id: str, n: int, now: float) -> list[str]:
    core = stores.core
    await core.create_call(CallRecord(call_id, function_id, 2, 1, False, 0, False, now))
    ids = [f"in-{call_id}-{i}" for i in range(n)]
    await core.add_inputs(call_id, function_id, [(iid, i, "", b"p") for i, iid in enumerate(ids)], now=now)
    return ids


async def test_an_input_keeps_when_it_started_and_finished_and_how_it_ended(stores: Stores) -> None:
    core = stores.core
    ok, bad, waiting = await _inputs(stores, "fc-1", "fu-1", 3, now=10.0)
    await core.claim_inputs("fu-1", "ta-1", 2, now=12.0, timeout_s=None)
    await core.finish_input(ok, "ta-1", b"r", 1, now=15.0, status=SUCCESS)
    await core.finish_input(bad, "ta-1", b"r", 1, now=16.5, status=FAILURE)
    found = {r.input_id: r for r in await core.inputs_of_calls(["fc-1"])}
    assert (found[ok].state, found[ok].holder, found[ok].started_at, found[ok].finished_at) == (
        "done",
        "ta-1",
        12.0,
        15.0,
    )
    assert (found[ok].status, found[bad].status, found[bad].finished_at) == (SUCCESS, FAILURE, 16.5)
    assert (found[waiting].state, found[waiting].started_at, found[waiting].status) == ("queued", None, 0)
    assert found[ok].created_at == 10.0


async def test_inputs_of_functions_are_those_enqueued_in_the_window_oldest_or_newest_first(stores: Stores) -> None:
    core = stores.core
    early = await _inputs(stores, "fc-early", "fu-1", 1, now=5.0)
    middle = await _inputs(stores, "fc-mid", "fu-1", 2, now=20.0)
    await _inputs(stores, "fc-other", "fu-2", 1, now=20.0)
    late = await _inputs(stores, "fc-late", "fu-1", 1, now=40.0)
    window = await core.inputs_of_functions(["fu-1"], 10.0, 40.0, 100, newest_first=False)
    assert [r.input_id for r in window] == middle
    newest = await core.inputs_of_functions(["fu-1", "fu-2"], 0.0, 100.0, 2, newest_first=True)
    assert newest[0].input_id == late[0] and len(newest) == 2
    oldest = await core.inputs_of_functions(["fu-1"], 0.0, 100.0, 1, newest_first=False)
    assert [r.input_id for r in oldest] == early
    assert await core.inputs_of_functions([], 0.0, 100.0, 10, newest_first=False) == []


async def test_a_call_made_from_a_container_names_the_input_that_made_it(stores: Stores) -> None:
    core = stores.core
    (parent,) = await _inputs(stores, "fc-parent", "fu-1", 1, now=1.0)
    await core.create_call(CallRecord("fc-child", "fu-2", 2, 1, False, 0, False, 2.0, parent))
    children = await core.calls_made_by([parent])
    assert [(c.call_id, c.parent_input_id) for c in children] == [("fc-child", parent)]
    assert (await core.get_call("fc-child")).parent_input_id == parent  # type: ignore[union-attr]
    assert await core.calls_made_by(["in-nobody"]) == []


async def test_containers_in_a_window_say_whether_they_failed_and_when_they_took_their_first_input(
    stores: Stores,
) -> None:
    core = stores.core
    for task_id, created, ended in (("ta-old", 1.0, 5.0), ("ta-ok", 8.0, None), ("ta-bad", 9.0, 12.0)):
        await core.put_task(TaskRecord(task_id, "fu-1", "ap-1", "starting", "h", created))
        if ended is not None:
            failed = task_id == "ta-bad"
            reason = "exited with code 3" if failed else "idle"
            await core.end_task(task_id, "stopped", ended, b"failed" if failed else None, reason)
    (input_id,) = await _inputs(stores, "fc-1", "fu-1", 1, now=8.0)
    await core.claim_inputs("fu-1", "ta-ok", 1, now=8.5, timeout_s=None)
    found = {t.task.task_id: t for t in await core.tasks_of_functions(["fu-1"], 7.0, 20.0)}
    assert set(found) == {"ta-ok", "ta-bad"}
    assert (found["ta-ok"].failed, found["ta-ok"].first_input_at) == (False, 8.5)
    assert (found["ta-bad"].failed, found["ta-bad"].first_input_at) == (True, None)
    assert found["ta-bad"].task.ended_at == 12.0
    assert (found["ta-bad"].exit_reason, found["ta-ok"].exit_reason) == ("exited with code 3", "")


async def test_the_variants_of_a_function_are_those_bound_from_it(stores: Stores) -> None:
    core = stores.core
    await core.put_function(FunctionRecord("fu-base", "ap-1", "Cls.*", b"def"))
    await core.put_function(FunctionRecord("fu-v1", "ap-1", "Cls.*", b"def", "fu-base", b"params-1"))
    await core.put_function(FunctionRecord("fu-v2", "ap-1", "Cls.*", b"def", "fu-base", b"params-2", b"opts"))
    variants = {v.function_id: v for v in await core.bound_functions("fu-base")}
    assert set(variants) == {"fu-v1", "fu-v2"}
    assert (variants["fu-v2"].serialized_params, variants["fu-v2"].options) == (b"params-2", b"opts")
    assert await core.bound_functions("fu-v1") == []
