"""Gang scheduling through the stock client: `@modal.clustered(size=2)` starts both containers together, each
learns its rank and its peers' addresses (TaskClusterHello), they reach each other on the cluster's private link
(IPv6) while an ordinary container cannot, and a cluster the workers together could never hold fails with a
clear error. A cluster spread over several workers: tests/cluster/test_gang.py."""

from __future__ import annotations

import ast
import os
import textwrap
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import BerthServer, python, start_server, stop_server

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def berth_small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BerthServer]:
    """crun (a cluster needs its network namespaces) with 8 worker slots, so a cluster of 40 never fits."""
    if os.geteuid() != 0:
        pytest.skip("clustered functions need the crun runtime, which needs root")
    server = start_server(
        tmp_path_factory.mktemp("berth-clustered") / "data",
        extra_env={"BERTH_WORKER_SLOTS": "8"},
        extra_args=["--runtime", "crun"],
    )
    yield server
    stop_server(server)


def _run(berth: BerthServer, body: str) -> str:
    code = "import sys; sys.path.insert(0, '.')\nimport modal\nfrom clustered import *\n" + textwrap.dedent(body)
    run = python(berth, "-c", code, timeout=600)
    assert run.returncode == 0, run.output + "\n--- server log ---\n" + berth.log()[-12000:]
    return [x for x in run.stdout.splitlines() if x.startswith("RESULT=")][-1].removeprefix("RESULT=")


def test_cluster_of_two_all_reduces_over_its_private_link_which_others_cannot_reach(berth_small: BerthServer) -> None:
    out = _run(
        berth_small,
        """
        import queue, time
        with modal.enable_output(), app.run():  # the containers' logs, a traceback included, reach the output
            with modal.Queue.ephemeral() as q:
                call = all_reduce.spawn(q)
                deadline = time.monotonic() + 300
                while True:  # until rank 0 says where it listens, or the call fails (its error, not queue.Empty)
                    try:
                        where = q.get(timeout=5)
                        break
                    except queue.Empty:
                        if time.monotonic() > deadline:
                            raise
                        try:
                            call.get(timeout=0)
                        except TimeoutError:
                            pass
                probes = [reach.remote(where["ipv6"]), reach.remote(where["ipv4"])]
                q.put("stop", partition="stop")
                result = call.get(timeout=300)
        print("RESULT=" + repr((result, probes)))
        """,
    )
    result, probes = ast.literal_eval(out)
    assert result["rank"] == 0 and result["rank_via_cluster"] == 0
    assert result["total"] == 10 + 20  # both ranks' values, summed over the link
    assert len(result["ips"]) == 2 and len(set(result["ips"])) == 2
    assert all(ip.startswith("fd") for ip in result["ips"])
    assert result["i6pn"] == result["ips"][0]
    assert len(result["ipv4s"]) == 2 and all(ip.startswith("10.") for ip in result["ipv4s"])
    assert result["cluster_id"].startswith("cu-") and len(result["container_ids"]) == 2
    assert all(p.startswith("refused") for p in probes), probes


def test_every_rank_runs_every_input_and_the_caller_gets_rank_0s_results(berth_small: BerthServer) -> None:
    out = _run(
        berth_small,
        """
        with app.run():
            with modal.Dict.ephemeral() as seen:
                results = list(echo_rank.map([seen] * 3, [1, 2, 3]))
                import time
                deadline = time.monotonic() + 60  # rank 1 may still be on its last input when rank 0 answered
                while seen.len() < 6 and time.monotonic() < deadline:
                    time.sleep(0.2)
                print("RESULT=" + repr((results, sorted(seen.keys()))))
        """,
    )
    results, seen = ast.literal_eval(out)
    assert results == [(0, 1), (0, 2), (0, 3)]
    assert seen == ["0:1", "0:2", "0:3", "1:1", "1:2", "1:3"]


def test_cluster_larger_than_all_workers_together_fails_with_a_clear_error(berth_small: BerthServer) -> None:
    out = _run(
        berth_small,
        """
        with app.run():
            try:
                too_big.remote()
                print("RESULT='no error'")
            except Exception as exc:
                print("RESULT=" + repr(f"{type(exc).__name__}: {exc}"))
        """,
    )
    message = ast.literal_eval(out)
    assert "cluster of 40 containers cannot be scheduled" in message
    assert "the workers connected to this server (1 worker) take 8 containers in all" in message
