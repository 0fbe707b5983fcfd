"""@app.cls through the real SDK: hooks, parameters, options, @concurrent and @batched."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.e2e.conftest import BerthServer, python


@pytest.fixture(scope="module")
def classes(berth: BerthServer) -> dict[str, Any]:
    run = python(berth, "classes.py", timeout=300)
    assert run.returncode == 0, run.output
    line = next(x for x in run.stdout.splitlines() if x.startswith("RESULT "))
    return dict(json.loads(line.removeprefix("RESULT ")))


def test_method_sees_state_from_enter_hook(classes: dict[str, Any]) -> None:
    assert classes["method"] == 101


def test_warm_container_is_reused_between_calls(classes: dict[str, Any]) -> None:
    assert classes["same_container"] == 1


def test_parametrized_class_uses_its_parameters(classes: dict[str, Any]) -> None:
    assert classes["param_default"] == "hello ann"
    assert classes["param_set"] == "hi bob hi bob"


def test_with_options_binds_a_working_variant(classes: dict[str, Any]) -> None:
    assert classes["with_options"] == 105


def test_concurrent_inputs_share_one_container(classes: dict[str, Any]) -> None:
    # max_containers=1 and five concurrent slots: every input ran in the same process.
    assert classes["concurrent_pids"] == 1


def test_batched_method_and_function(classes: dict[str, Any]) -> None:
    assert classes["batched_method"] == [0, 2, 4, 6, 8, 10, 12, 14]
    assert classes["batched_fn"] == [3000, 3001, 3002]
