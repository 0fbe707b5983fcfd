"""Image.run_function() as a real build step on the crun runtime: the stock client creates a builder
Function and an image whose step runs it; Berth runs it once in the image built so far and keeps what
it wrote as a layer, cached by the function's source, globals and arguments."""

from __future__ import annotations

import os
import secrets

import pytest

from tests.e2e.conftest import BerthServer, Run, modal

APP = "images_run_function.py"


def _run(server: BerthServer, **env: str) -> Run:
    return modal(server, "run", APP, env={f"BERTH_TEST_{k.upper()}": v for k, v in env.items()}, timeout=600)


def _result(output: str, prefix: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith(prefix)]
    assert lines, output
    return lines[-1].removeprefix(prefix)


def test_run_function_writes_a_layer_the_app_reads(berth_oci: BerthServer) -> None:
    nonce = secrets.token_hex(4)
    run = _run(berth_oci, nonce=nonce, size="7")
    assert run.returncode == 0, run.output
    # args and kwargs reach the builder, and its print streams as build log
    assert f"builder-ran name=weights nonce={nonce} size=7 revision=r1" in run.output
    # what it wrote (with its env= secret and the image's env) is in the image, and in the RUN layer above it
    assert _result(run.stdout, "model=") == f"weights:{nonce}:7:s3cret:from-image"
    assert _result(run.stdout, "after=") == f"weights:{nonce}:7:s3cret:from-image"
    # the builder's secret belongs to the build, not to the app's containers
    assert _result(run.stdout, "secret=") == "<unset>"


def test_unchanged_run_function_is_cached_and_a_change_reruns_it(berth_oci: BerthServer) -> None:
    nonce = secrets.token_hex(4)
    first = _run(berth_oci, nonce=nonce)
    assert first.returncode == 0, first.output
    assert "builder-ran" in first.output

    second = _run(berth_oci, nonce=nonce)
    assert second.returncode == 0, second.output
    assert "builder-ran" not in second.output
    assert "RUN FUNCTION" not in second.output
    assert _result(second.stdout, "model=") == f"weights:{nonce}:3:s3cret:from-image"

    changed_kwarg = _run(berth_oci, nonce=nonce, size="5")  # the builder and the step after it run again
    assert changed_kwarg.returncode == 0, changed_kwarg.output
    assert f"builder-ran name=weights nonce={nonce} size=5" in changed_kwarg.output
    assert "=> RUN cp /opt/model.txt /opt/after.txt\n" in changed_kwarg.output
    assert _result(changed_kwarg.stdout, "after=") == f"weights:{nonce}:5:s3cret:from-image"

    changed_global = _run(berth_oci, nonce=nonce, revision="r2")  # a global the builder reads keys it too
    assert changed_global.returncode == 0, changed_global.output
    assert f"builder-ran name=weights nonce={nonce} size=3" in changed_global.output


def test_raising_build_function_fails_the_build_and_is_retried(berth_oci: BerthServer) -> None:
    nonce = secrets.token_hex(4)
    for _ in range(2):  # a failure is not cached: the second attempt runs the builder again
        run = _run(berth_oci, nonce=nonce, fail=nonce)
        assert run.returncode != 0, run.output
        assert f"builder-ran name=weights nonce={nonce}" in run.output
        assert f"ValueError: builder-failed-{nonce}" in run.output
        assert "Traceback" in run.output and 'images_run_function.py", line' in run.output
        assert "Image build for im-" in run.output


def test_process_runtime_refuses_run_function(berth: BerthServer) -> None:
    if os.environ.get("BERTH_E2E_RUNTIME", "process") != "process":
        pytest.skip("the shared server runs on an OCI runtime")
    run = _run(berth, nonce=secrets.token_hex(4))
    assert run.returncode != 0
    assert "Image.run_function() needs an OCI runtime" in run.output
    assert "berth up --runtime crun" in run.output
