"""Two `berth server` replicas on one PostgreSQL, Redis and S3, driven by the unmodified modal CLI: the client
talks to replica 1 while the only worker is joined to replica 2. The call runs on replica 2's container,
its printed output reaches the client through replica 1, and cancelling a running call through replica 1
stops it on replica 2. Sandboxes that replica 2 started are found, listed, exec'd into, waited for and
terminated through replica 1, and their names stay unique across both."""

from __future__ import annotations

import json
import os
import re
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from berth.devservices.s3 import SeaweedS3
from tests.e2e.conftest import BIN, BerthServer, _free_port, last_json, modal, sdk, wait_for
from tests.e2e.test_cluster import Cluster

pytestmark = pytest.mark.timeout(600)


def _start_replica(root: Path, name: str, engines: dict[str, str]) -> BerthServer:
    port = _free_port()
    data = root / name
    log_path = root / f"{name}.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [BIN / "berth", "server", "--data-dir", data, "--listen", f"127.0.0.1:{port}", "--replica-name", name],
            stdout=log,
            stderr=log,
            env={**os.environ, **engines},
        )
    wait_for(
        lambda: subprocess.run([BIN / "berth", "status", "--data-dir", data], capture_output=True).returncode == 0,
        f"replica {name} to serve",
    )
    return BerthServer(data, port, proc, log_path)


@pytest.fixture
def replicas(
    fresh_postgres_url: str, redis_url: str, seaweed_s3: SeaweedS3, tmp_path: Path
) -> Iterator[tuple[BerthServer, Cluster]]:
    engines = {
        "BERTH_DATABASE_URL": fresh_postgres_url,
        "BERTH_REDIS_URL": redis_url,
        "BERTH_BLOBS_URL": seaweed_s3.blobs_url("replicas"),
    }
    first = _start_replica(tmp_path, "r1", engines)
    second = _start_replica(tmp_path, "r2", engines)
    token = subprocess.run(
        [BIN / "berth", "join-token", "create", "--data-dir", second.data_dir],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **engines},
    ).stdout.strip()
    cluster = Cluster(second, token, tmp_path)
    cluster.add_worker("w1")
    cluster.wait_joined("w1")
    try:
        yield first, cluster
    finally:
        cluster.stop()
        first.proc.terminate()
        first.proc.wait(timeout=60)


def test_a_client_of_one_replica_is_served_by_anothers_worker_logs_and_cancel_included(
    replicas: tuple[BerthServer, Cluster], tmp_path: Path
) -> None:
    first, cluster = replicas
    run = modal(first, "run", "replicas.py::main", "--note", str(tmp_path / "note"), timeout=300)
    assert run.returncode == 0, run.output + first.log() + cluster.server.log()
    assert "RESULT 42" in run.stdout, run.output
    assert "container says 21" in run.output  # printed in replica 2's container, streamed by replica 1
    cancel = re.search(r"CANCEL (\S+) after (\d+)s", run.stdout)
    assert cancel is not None, run.output
    assert cancel.group(1) not in ("not", "TimeoutError"), run.output  # the running input was stopped
    assert int(cancel.group(2)) < 30, run.output
    assert "worker w1 joined" not in first.log()  # the work was replica 2's


SANDBOX_APP = "sb-replicas"
HEAD = f"""
import json, time, modal
from modal.exception import *
app = modal.App.lookup({SANDBOX_APP!r}, create_if_missing=True)
"""


def _client(server: BerthServer, body: str, **given: object) -> dict:  # type: ignore[type-arg]
    """Run `body` in a fresh client of `server`, with `given` as JSON-decoded globals; its last JSON line."""
    args = "".join(f"{name} = json.loads({json.dumps(value)!r})\n" for name, value in given.items())
    return last_json(sdk(server, HEAD + args + textwrap.dedent(body), timeout=300))


def test_sandboxes_of_one_replica_are_found_used_and_terminated_through_another(
    replicas: tuple[BerthServer, Cluster],
) -> None:
    first, cluster = replicas
    second = cluster.server  # the worker is joined here: its sandboxes run on replica 2
    made = _client(
        second,
        """
        named = modal.Sandbox.create("sleep", "600", app=app, name="the-one", tags={"team": "a"})
        other = modal.Sandbox.create("sleep", "600", app=app, tags={"team": "b"})
        short = modal.Sandbox.create("bash", "-c", "sleep 25; exit 7", app=app)
        print(json.dumps({"named": named.object_id, "other": other.object_id, "short": short.object_id,
                          "app_id": app.app_id}))
        """,
    )
    # Through replica 1: list, from_name, exec, a name replica 2's sandbox holds, from_id, set_tags.
    found = _client(
        first,
        """
        listed = sorted(s.object_id for s in modal.Sandbox.list(app_id=app.app_id))
        team_a = [s.object_id for s in modal.Sandbox.list(app_id=app.app_id, tags={"team": "a"})]
        by_name = modal.Sandbox.from_name(app_name, "the-one")
        via_name = by_name.exec("bash", "-c", "echo via-name; echo err >&2")
        out, err = via_name.stdout.read(), via_name.stderr.read()
        try:
            modal.Sandbox.create("sleep", "1", app=app, name="the-one")
            duplicate = None
        except AlreadyExistsError as exc:
            duplicate = str(exc)
        modal.Sandbox.from_id(ids["other"]).set_tags({"team": "c"})
        print(json.dumps({"listed": listed, "team_a": team_a, "by_name": by_name.object_id, "out": out,
                          "err": err, "duplicate": duplicate, "polled": modal.Sandbox.from_id(ids["short"]).poll(),
                          "same_app": app.app_id == ids["app_id"]}))
        """,
        ids=made,
        app_name=SANDBOX_APP,
    )
    assert found["same_app"] is True
    assert found["listed"] == sorted([made["named"], made["other"], made["short"]]), found
    assert found["team_a"] == [made["named"]]
    assert found["by_name"] == made["named"] and found["out"] == "via-name\n" and found["err"] == "err\n"
    assert found["duplicate"] and "the-one" in found["duplicate"]  # held by replica 2's sandbox
    assert found["polled"] is None
    # Replica 2, which runs it, sees the tags set through replica 1.
    tagged = _client(
        second,
        """
        team_c = [s.object_id for s in modal.Sandbox.list(app_id=app.app_id, tags={"team": "c"})]
        print(json.dumps({"team_c": team_c, "tags": modal.Sandbox.from_id(ids["other"]).get_tags()}))
        """,
        ids=made,
    )
    assert tagged == {"team_c": [made["other"]], "tags": {"team": "c"}}
    # Through replica 1 again: wait, terminate (replica 2 does it), and the name is free afterwards.
    ended = _client(
        first,
        """
        short = modal.Sandbox.from_id(ids["short"])
        short.wait(raise_on_termination=False)
        other = modal.Sandbox.from_id(ids["other"])
        other.terminate()
        other.wait(raise_on_termination=False)
        named = modal.Sandbox.from_name(app_name, "the-one")
        named.terminate()
        named.wait(raise_on_termination=False)
        after = [s.object_id for s in modal.Sandbox.list(app_id=app.app_id)]
        try:
            modal.Sandbox.from_name(app_name, "the-one")
            gone = None
        except NotFoundError as exc:
            gone = type(exc).__name__
        print(json.dumps({"short_rc": short.returncode, "other_rc": other.returncode, "named_rc": named.returncode,
                          "after": after, "gone": gone}))
        """,
        ids=made,
        app_name=SANDBOX_APP,
    )
    assert ended["short_rc"] == 7
    assert ended["other_rc"] == 137 and ended["named_rc"] == 137  # terminated by replica 2, as asked through 1
    assert ended["after"] == [] and ended["gone"] == "NotFoundError"
    assert "as asked through another replica" in second.log()
