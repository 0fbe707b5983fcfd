"""`modal run` and `python app.py` against a real Berth server: entrypoints, logs, exit."""

from __future__ import annotations

import time

from tests.e2e.conftest import BerthServer, modal, python


def test_modal_run_passes_cli_args_to_local_entrypoint_and_runs_remote(berth: BerthServer) -> None:
    run = modal(berth, "run", "basics.py", "--n", "6", "--label", "xyz")
    assert run.returncode == 0, run.output
    assert "remote=36" in run.stdout
    assert "local=49" in run.stdout
    assert "label=xyz" in run.stdout


def test_container_stdout_and_stderr_reach_the_terminal(berth: BerthServer) -> None:
    run = modal(berth, "run", "basics.py", "--n", "5")
    assert run.returncode == 0, run.output
    # The modal CLI prints both container streams on its own console, as it does against Modal.
    assert "stdout from square(5)" in run.stdout
    assert "stderr from square(5)" in run.stdout


def test_modal_run_exits_without_waiting_out_the_logs_timeout(berth: BerthServer) -> None:
    # With a 120 s logs timeout, a server that never sends app_done would hold the client for 2 minutes.
    started = time.monotonic()
    run = modal(berth, "run", "basics.py", "--n", "2", env={"MODAL_LOGS_TIMEOUT": "120"})
    assert run.returncode == 0, run.output
    assert time.monotonic() - started < 60


def test_modal_run_selects_a_function_with_double_colon(berth: BerthServer) -> None:
    run = modal(berth, "run", "basics.py::shout")
    assert run.returncode == 0, run.output
    assert "SHOUT-FROM-CONTAINER" in run.stdout


def test_python_script_with_app_run(berth: BerthServer) -> None:
    run = python(berth, "app_run.py")
    assert run.returncode == 0, run.output
    assert "cube=27" in run.stdout
    assert "cubes=[1, 8, 27]" in run.stdout


def test_container_that_fails_to_import_fails_the_call_with_its_error(berth: BerthServer) -> None:
    run = modal(berth, "run", "import_error.py", timeout=120)
    assert run.returncode != 0
    assert "RuntimeError: this module refuses to import in a container" in run.output
