"""The call forms of modal.Function, driven by the real SDK (apps/calls.py prints its results)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.e2e.conftest import BerthServer, python


@pytest.fixture(scope="module")
def calls(berth: BerthServer) -> dict[str, Any]:
    run = python(berth, "calls.py", timeout=900)
    assert run.returncode == 0, run.output
    line = next(x for x in run.stdout.splitlines() if x.startswith("RESULT "))
    return dict(json.loads(line.removeprefix("RESULT ")))


def test_map_of_ten_thousand_inputs_returns_them_in_order(calls: dict[str, Any]) -> None:
    assert calls["map_in_order"] is True


def test_map_without_ordering_returns_every_output(calls: dict[str, Any]) -> None:
    assert calls["map_unordered"] == list(range(1, 51))


def test_map_return_exceptions_puts_exceptions_in_place(calls: dict[str, Any]) -> None:
    assert calls["return_exceptions"] == ["ValueError('bad 0')", 1, 2, "ValueError('bad 3')", 4, 5]


def test_starmap_and_for_each(calls: dict[str, Any]) -> None:
    assert calls["starmap"] == [3, 7]
    assert calls["for_each"] == "ok"


def test_spawn_get_from_id_and_gather(calls: dict[str, Any]) -> None:
    assert calls["spawn_get"] == 0.2
    assert calls["from_id_get"] == 0.2
    assert calls["gather"] == [1, 2, 3]


def test_get_with_timeout_raises_and_cancel_terminates_the_call(calls: dict[str, Any]) -> None:
    assert calls["get_timeout"] == "TimeoutError"
    assert calls["cancelled"] == "RemoteError"


def test_spawn_map_returns_none(calls: dict[str, Any]) -> None:
    assert calls["spawn_map"] is True


def test_the_outputs_of_a_spawned_map_are_read_by_index_and_by_range(calls: dict[str, Any]) -> None:
    assert calls["spawn_map_index"] == [18, 11, 14]
    assert calls["spawn_map_iter"] == [13, 14, 15, 16]


def test_generators_stream_every_item(calls: dict[str, Any]) -> None:
    assert calls["gen"] == [0, 10, 20, 30]
    assert calls["agen"] == ["a0", "a1", "a2"]


def test_async_aio_forms(calls: dict[str, Any]) -> None:
    assert calls["aio_remote"] == 42
    assert calls["aio_map"] == [1, 2, 3, 4, 5]
    assert calls["aio_gen"] == [0, 10, 20]
