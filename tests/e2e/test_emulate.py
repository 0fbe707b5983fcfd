"""Emulator mode (`berth up --emulate`, for CI): gpu= that no worker has runs on CPU with the requested type in the
container's environment, an image's Python this machine cannot provide becomes the nearest one it can, and the
client is warned of each. Without it, the same requests keep their clear errors (test_gpu.py; the Python refusal
is pinned in tests/unit/test_image_build_logic.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import BerthServer, python, start_server, stop_server

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="image builds need the crun runtime, which needs root")


@pytest.fixture(scope="module")
def berth_emulated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BerthServer]:
    server = start_server(
        tmp_path_factory.mktemp("berth-emulate") / "data", extra_args=["--runtime", "crun", "--emulate"]
    )
    yield server
    stop_server(server)


def _call(berth: BerthServer, fn: str) -> tuple[str, str]:
    code = (
        "import sys; sys.path.insert(0, '.')\n"
        f"from emulated import app, {fn}\n"
        "with app.run():\n"
        f"    print('RESULT=' + repr({fn}.remote()))\n"
    )
    run = python(berth, "-c", code, timeout=600)
    assert run.returncode == 0, run.output + berth.log()[-3000:]
    return [x for x in run.stdout.splitlines() if x.startswith("RESULT=")][-1].removeprefix("RESULT="), run.output


def test_gpu_function_runs_on_cpu_with_the_requested_type_and_a_warning(berth_emulated: BerthServer) -> None:
    result, output = _call(berth_emulated, "on_gpu")
    assert result == repr({"emulated": "A100", "visible": None})
    assert "emulator mode: no worker has gpu='A100', so on_gpu runs on CPU" in output
    assert output.count("emulator mode: no worker has gpu='A100'") == 1


def test_image_python_is_substituted_with_the_nearest_one_and_a_warning(berth_emulated: BerthServer) -> None:
    result, output = _call(berth_emulated, "python_version")
    assert result == repr("3.11")
    assert "emulator mode: the image asks for Python 3.12" in output and "runs Python 3.11" in output
