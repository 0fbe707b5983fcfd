"""Images built for real on the crun runtime: the stock client's Image API (debian_slim, apt_install,
uv_pip_install, run_commands, env, workdir, add_local_file) against Berth's image builder."""

from __future__ import annotations

import secrets
import time

from tests.e2e.conftest import BerthServer, modal


def _result(output: str, prefix: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith(prefix)]
    assert lines, output
    return lines[-1].removeprefix(prefix)


def test_apt_and_uv_image_builds_and_runs_the_function(berth_oci: BerthServer) -> None:
    run = modal(berth_oci, "run", "images_sklearn.py", timeout=1200)
    assert run.returncode == 0, run.output
    assert "Inside run!" in run.output
    assert float(_result(run.stdout, "coef=")) > 900  # sklearn's diabetes BMI coefficient is ~949


def test_second_run_of_an_unchanged_app_does_not_rebuild(berth_oci: BerthServer) -> None:
    first = modal(berth_oci, "run", "images_sklearn.py", timeout=1200)
    assert first.returncode == 0, first.output
    started = time.monotonic()
    second = modal(berth_oci, "run", "images_sklearn.py", timeout=300)
    assert second.returncode == 0, second.output
    assert "Building image" not in second.output
    assert "=> RUN" not in second.output
    assert time.monotonic() - started < 60


def test_image_steps_env_workdir_and_local_files_reach_the_container(berth_oci: BerthServer) -> None:
    nonce = secrets.token_hex(4)
    run = modal(berth_oci, "run", "images_layers.py", env={"BERTH_TEST_NONCE": nonce}, timeout=600)
    assert run.returncode == 0, run.output
    assert _result(run.stdout, "first=") == "first-layer"
    assert _result(run.stdout, "second=") == f"second-layer-{nonce}"
    assert _result(run.stdout, "var=") == "from-env"
    assert _result(run.stdout, "cwd=") == "/srv/work"
    assert _result(run.stdout, "copied=") == "payload-from-local-file"
    assert _result(run.stdout, "mounted=") == "payload-from-local-file"


def test_changing_one_layer_rebuilds_it_but_not_the_layers_before(berth_oci: BerthServer) -> None:
    first = modal(berth_oci, "run", "images_layers.py", env={"BERTH_TEST_NONCE": secrets.token_hex(4)}, timeout=600)
    assert first.returncode == 0, first.output
    nonce = secrets.token_hex(4)
    second = modal(berth_oci, "run", "images_layers.py", env={"BERTH_TEST_NONCE": nonce}, timeout=600)
    assert second.returncode == 0, second.output
    assert f"echo second-layer-{nonce}" in second.output  # the changed step ran, its log streamed
    assert "echo first-layer" not in second.output  # the unchanged one below it came back from the cache
    assert _result(second.stdout, "second=") == f"second-layer-{nonce}"


def test_failing_build_step_shows_its_output_and_exit_code_and_is_retried(berth_oci: BerthServer) -> None:
    env = {"BERTH_TEST_BAD": "failing-step", "BERTH_TEST_NONCE": secrets.token_hex(4)}
    for _ in range(2):  # a failure is not cached: the second attempt runs the step again
        run = modal(berth_oci, "run", "images_bad.py", env=env, timeout=600)
        assert run.returncode != 0
        assert f"step-output-{env['BERTH_TEST_NONCE']}" in run.output
        assert "exit code 3" in run.output


def test_nonexistent_pip_package_fails_the_build_with_pips_message(berth_oci: BerthServer) -> None:
    run = modal(berth_oci, "run", "images_bad.py", env={"BERTH_TEST_BAD": "no-such-package"}, timeout=600)
    assert run.returncode != 0
    assert "berth-no-such-package-0xdead" in run.output
    assert "No matching distribution" in run.output


def test_nonexistent_apt_package_fails_the_build_with_apts_message(berth_oci: BerthServer) -> None:
    run = modal(berth_oci, "run", "images_bad.py", env={"BERTH_TEST_BAD": "no-such-apt"}, timeout=600)
    assert run.returncode != 0
    assert "Unable to locate package berth-no-such-apt-package" in run.output


def test_python_version_debian_does_not_carry_is_refused_by_name(berth_oci: BerthServer) -> None:
    run = modal(berth_oci, "run", "images_bad.py", env={"BERTH_TEST_BAD": "python-version"}, timeout=300)
    assert run.returncode != 0
    assert "Python 3.12 is not available" in run.output
    assert "3.11 (bookworm)" in run.output


def test_unsupported_dockerfile_instruction_is_named(berth_oci: BerthServer) -> None:
    run = modal(berth_oci, "run", "images_bad.py", env={"BERTH_TEST_BAD": "instruction"}, timeout=300)
    assert run.returncode != 0
    assert "Unsupported Dockerfile instruction 'ONBUILD'" in run.output


def test_unreachable_registry_is_named_in_the_error(berth_oci: BerthServer) -> None:
    run = modal(berth_oci, "run", "images_bad.py", env={"BERTH_TEST_BAD": "registry"}, timeout=300)
    assert run.returncode != 0
    assert "registry.berth-unreachable.example" in run.output
    assert "not reachable" in run.output


def test_server_keeps_serving_after_failed_builds(berth_oci: BerthServer) -> None:
    run = modal(berth_oci, "run", "images_sklearn.py", timeout=1200)
    assert run.returncode == 0, run.output
    assert float(_result(run.stdout, "coef=")) > 900


def test_force_build_rebuilds_the_layer_every_run(berth_oci: BerthServer) -> None:
    stamps = []
    for _ in range(2):
        run = modal(berth_oci, "run", "images_force.py", timeout=600)
        assert run.returncode == 0, run.output
        assert "cat /proc/sys/kernel/random/uuid" in run.output  # the step ran again, not from the cache
        stamps.append(_result(run.stdout, "stamp="))
    assert stamps[0] != stamps[1]


def test_dockerfile_requirements_and_local_python_source_use_client_files(berth_oci: BerthServer) -> None:
    run = modal(berth_oci, "run", "images_context.py", timeout=900)
    assert run.returncode == 0, run.output
    assert _result(run.stdout, "copy=") == "dockerfile-context-file"
    assert _result(run.stdout, "greeting=") == "hello-from-dockerfile"
    assert _result(run.stdout, "env=") == "hello-from-dockerfile"
    assert _result(run.stdout, "six=") == "1.16.0"
    assert _result(run.stdout, "pkg=") == "local-python-source"


def test_modal_force_build_env_rebuilds_and_its_absence_uses_the_cache(berth_oci: BerthServer) -> None:
    first = modal(berth_oci, "run", "images_force_env.py", timeout=600)
    assert first.returncode == 0, first.output
    cached = modal(berth_oci, "run", "images_force_env.py", timeout=600)
    assert cached.returncode == 0, cached.output
    assert _result(cached.stdout, "stamp=") == _result(first.stdout, "stamp=")
    forced = modal(berth_oci, "run", "images_force_env.py", env={"MODAL_FORCE_BUILD": "1"}, timeout=600)
    assert forced.returncode == 0, forced.output
    assert "cat /proc/sys/kernel/random/uuid" in forced.output  # built again, not from the cache
    assert _result(forced.stdout, "stamp=") != _result(first.stdout, "stamp=")
