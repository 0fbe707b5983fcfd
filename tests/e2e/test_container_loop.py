"""Berth's container loop (berth.worker.berth_loop) keeps modal's semantics for inputs it prefetched: the rest
of the suite runs on it too; these pin what only prefetching could break."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.e2e.conftest import BerthServer, modal


@pytest.fixture(scope="module")
def prefetched(berth: BerthServer) -> dict[str, Any]:
    run = modal(berth, "run", "prefetch.py", timeout=300)
    assert run.returncode == 0, run.output
    line = next(x for x in run.stdout.splitlines() if x.startswith("RESULT "))
    return dict(json.loads(line.removeprefix("RESULT ")))


def test_a_cancelled_input_that_waits_in_the_container_never_runs(prefetched: dict[str, Any]) -> None:
    assert (prefetched["X"], prefetched["A"], prefetched["C"]) == ("X", "A", "C")
    assert prefetched["B"] == "RemoteError", prefetched  # what a cancelled call raises (as test_calls pins)
    assert prefetched["B-ran"] is False


def test_each_prefetched_input_times_out_from_when_it_starts(prefetched: dict[str, Any]) -> None:
    assert prefetched["timed"] == [1.2, 1.2, 1.2]
    assert prefetched["timeout"] == [0.2, "FunctionTimeoutError", 0.3]


def test_an_input_whose_call_was_cancelled_with_its_container_is_not_run_again(prefetched: dict[str, Any]) -> None:
    assert prefetched["after-terminate"] == "U"
    assert prefetched["T-runs"] == 1
