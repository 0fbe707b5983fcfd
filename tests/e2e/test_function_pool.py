"""The standby pool of function containers (berth.worker.sandbox_pool, berth_loop --standby) and memory
snapshots on it (berth.worker.standby), through the stock client on crun: once an image has been used, the
next function containers of it start in containers made ahead, whose Python had modal imported, and behave
as fresh ones (their own task id, identity, hostname and secrets, the return value, nothing of another
task); a memory-snapshot function's standby ran its snap=True enter hooks before it was handed its task and
its snap=False hooks after. BERTH_FUNCTION_POOL=0 (fresh containers) is what the rest of the suite's first
containers of each image run. Timings are in bench/coldpool.py, not here."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conftest import BerthServer, last_json, sdk, start_server, stop_server

SCRIPT = """
import json, sys, time
from pathlib import Path
sys.path.insert(0, ".")
from function_pool import app, first, second, Snapshotted, SnapshotUsesApi
LOG = Path({log!r})

def count(what):
    return LOG.read_text(errors="replace").count(what)

def wait_more(what, before):
    deadline = time.monotonic() + 90
    while count(what) <= before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert count(what) > before, f"no {{what!r}} in the server log"

READY = "pooled function container"
SNAP_READY = "pooled memory-snapshot container"
FAILED = "could not start a pooled memory-snapshot container"
with app.run():
    before = count(READY)
    a = first.remote(1)  # fresh, or from a pool earlier tests filled: either way the pool refills
    wait_more(READY, before)
    before = count(READY)
    b1 = second.remote(2)
    wait_more(READY, before)
    b2 = second.remote(3)
    before = count(SNAP_READY)
    s1 = Snapshotted().run.remote()  # this function's first container: a fresh one, then its standbys
    wait_more(SNAP_READY, before)
    s2 = Snapshotted().run.remote()
    before = count(FAILED)
    u1 = SnapshotUsesApi().run.remote()  # fresh; then its standbys' snap=True hook is refused its Dict
    wait_more(FAILED, before)
    u2 = SnapshotUsesApi().run.remote()
print(json.dumps({{"a": a, "b1": b1, "b2": b2, "s1": s1, "s2": s2, "u1": u1, "u2": u2}}))
"""


@pytest.fixture(scope="module")
def berth_pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BerthServer]:
    """A crun server of the module's own: on the suite's shared one, the pools that earlier tests' images left
    (each kept until idle) can hold the pool's caps, and a standby this module waits for is then never made."""
    if os.geteuid() != 0:
        pytest.skip("the standby pool needs the crun runtime, which needs root")
    server = start_server(tmp_path_factory.mktemp("berth-pool") / "data", extra_args=["--runtime", "crun"])
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def served(berth_pool: BerthServer) -> dict[str, Any]:
    berth_oci = berth_pool
    seen = last_json(sdk(berth_oci, SCRIPT.format(log=str(berth_oci.log_path)), timeout=300))
    log = berth_oci.log_path.read_text(errors="replace")
    seen["log"] = log
    seen["pool_of"] = dict(re.findall(r"function task (ta-\w+) starts in pooled container (pool-\w+)", log))
    return seen


def test_a_function_served_from_the_pool_behaves_as_a_fresh_one(served: dict[str, Any]) -> None:
    a, b1, b2 = served["a"], served["b1"], served["b2"]
    assert (a["x"], b1["x"], b2["x"]) == (2, 6, 9)
    for got in (b1, b2):
        assert got["task"] in served["pool_of"]  # started in a pooled container
        assert got["task"].startswith("ta-") and got["host"] == got["task"]  # its own name
        assert f"x-berth-task-id:{got['task']}," in got["headers"]  # its own identity (the server took it)
        assert (got["a"], got["b"]) == (None, "b-secret")  # its own secrets, not another function's
        assert got["cwd"] == "/root" and "function_pool.py" in got["root"]  # its app's source, placed
        assert got["nice"] == 0  # the standby's low priority is not the task's
    assert len({a["task"], b1["task"], b2["task"]}) == 3  # a container each


def test_a_pooled_container_never_ran_another_task(served: dict[str, Any]) -> None:
    pool_of = served["pool_of"]
    assert len(set(pool_of.values())) == len(pool_of)  # each pooled container was handed over once
    assert "left-behind" not in served["b1"]["root"] and "left-behind" not in served["b2"]["root"]


def test_snap_true_enter_hooks_run_in_the_standby_and_snap_false_after_the_hand_over(served: dict[str, Any]) -> None:
    fresh, restored = served["s1"], served["s2"]
    # a fresh container (the function's first) runs both hooks as its own task
    assert fresh["events"] == [["snap", fresh["task"]], ["after", fresh["task"]]]
    assert restored["task"] in served["pool_of"] and restored["task"] != fresh["task"]
    (snap, snap_task), (after, after_task) = restored["events"]
    # snap=True ran once, in the standby before it had a task; snap=False ran after, as the task
    assert (snap, after) == ("snap", "after")
    assert snap_task.startswith("pool-") and after_task == restored["task"]
    assert restored["weights"] == "loaded before the snapshot"  # what the snap=True hook set, seen by the input
    assert restored["nice"] == 0


def test_a_snap_true_hook_that_calls_modal_is_refused_by_name_and_its_containers_start_fresh(
    served: dict[str, Any],
) -> None:
    assert "DictGetOrCreate is not available before a memory snapshot on Berth" in served["log"]
    u1, u2 = served["u1"], served["u2"]
    assert u1.startswith("ta-") and u2.startswith("ta-") and u1 != u2
    assert u1 not in served["pool_of"] and u2 not in served["pool_of"]  # both fresh, both served
