"""Failures reach the caller clearly and nobody waits forever; big payloads travel as blobs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import BerthServer, modal, python


@pytest.fixture(scope="module")
def faults(berth: BerthServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    marker = tmp_path_factory.mktemp("faults") / "attempts"
    run = python(berth, "faults.py", str(marker), timeout=300)
    assert run.returncode == 0, run.output
    line = next(x for x in run.stdout.splitlines() if x.startswith("RESULT "))
    result = dict(json.loads(line.removeprefix("RESULT ")))
    result["attempts"] = Path(marker).read_text()
    return result


def test_remote_exception_keeps_type_message_and_remote_traceback(faults: dict[str, Any]) -> None:
    err = faults["raises"]
    assert (err["module"], err["type"], err["message"]) == ("faults", "CustomError", "custom failure for 7")
    assert "deep_helper" in err["traceback"]


def test_crashed_container_fails_its_input_with_the_exit_code(faults: dict[str, Any]) -> None:
    err = faults["crash"]
    assert err["type"] == "RemoteError"
    assert "exited with code 3" in err["message"]


def test_retries_rerun_an_input_whose_container_crashed(faults: dict[str, Any]) -> None:
    assert faults["flaky"] == {"ok": 2}
    assert faults["attempts"] == "3"


def test_exhausted_retries_raise_the_last_exception(faults: dict[str, Any]) -> None:
    assert (faults["always_fails"]["type"], faults["always_fails"]["message"]) == ("RuntimeError", "still failing")


def test_timeout_raises_function_timeout_error_and_function_recovers(faults: dict[str, Any]) -> None:
    assert faults["timeout"]["type"] == "FunctionTimeoutError"
    assert faults["after_timeout"] == {"ok": "woke"}


def test_arguments_and_results_over_two_mib_round_trip(faults: dict[str, Any], berth: BerthServer) -> None:
    assert faults["big_roundtrip"] is True
    assert any(p.name.startswith("bl-") for p in (berth.data_dir / "blobs").iterdir())


def test_containers_that_die_before_reaching_the_server_fail_the_call_not_hang(berth: BerthServer) -> None:
    run = modal(berth, "run", "startup_crash.py", timeout=300)
    assert run.returncode == 0, run.output
    assert "FAILED" in run.stdout and "3 containers in a row exited before reaching the server" in run.stdout, (
        run.output
    )
    assert "before it reached the server" in run.output  # each crash is in the app's log as it happens
