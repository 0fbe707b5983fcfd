"""Ephemeral apps end with their client; abandoned deploys leave nothing behind."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from grpclib.client import Channel
from modal_proto import api_grpc, api_pb2

from tests.e2e.conftest import APPS, BerthServer, start_server, stop_server


@pytest.fixture(scope="module")
def quick_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BerthServer]:
    # Ephemeral apps whose client goes quiet are stopped after 5 s instead of 60 s.
    server = start_server(tmp_path_factory.mktemp("quick") / "data", {"BERTH_APP_HEARTBEAT_TIMEOUT": "5"})
    yield server
    stop_server(server)


def _client_env(server: BerthServer) -> dict[str, str]:
    # The client beats every 15 s by default: against a 5 s timeout, a live client's app would be stopped
    # 5 s after it started, before a slow container even ran. A client that beats every second is quiet
    # only once it is gone.
    return {**server.env, "MODAL_HEARTBEAT_INTERVAL": "1"}


def _alive(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


@pytest.mark.parametrize("how", ["sigint", "sigkill"])
def test_ephemeral_app_stops_with_its_client(quick_server: BerthServer, tmp_path: Path, how: str) -> None:
    note = tmp_path / "pid"
    client = subprocess.Popen(
        [sys.executable, "long_call.py", str(note)],
        cwd=APPS,
        env=_client_env(quick_server),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not (note.exists() and note.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    container = int(note.read_text())
    client.send_signal(signal.SIGINT if how == "sigint" else signal.SIGKILL)
    client.wait(timeout=60)
    deadline = time.monotonic() + 60  # disconnect: at once; lost heartbeats: after the 5 s timeout
    while _alive(container) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(container)


async def test_abandoned_deploy_leaves_no_app_behind(quick_server: BerthServer) -> None:
    env = quick_server.env
    md = {"x-modal-token-id": env["MODAL_TOKEN_ID"], "x-modal-token-secret": env["MODAL_TOKEN_SECRET"]}
    channel = Channel("127.0.0.1", quick_server.port)
    stub = api_grpc.ModalClientStub(channel)
    try:
        for reason in ("disconnect", "silence"):
            app = await stub.AppCreate(
                api_pb2.AppCreateRequest(description="half", app_state=api_pb2.APP_STATE_INITIALIZING), metadata=md
            )
            if reason == "disconnect":
                await stub.AppClientDisconnect(
                    api_pb2.AppClientDisconnectRequest(
                        app_id=app.app_id, reason=api_pb2.APP_DISCONNECT_REASON_DEPLOYMENT_EXCEPTION
                    ),
                    metadata=md,
                )
            else:
                time.sleep(8)  # no heartbeats for longer than the server's 5 s timeout
            listed = await stub.AppList(api_pb2.AppListRequest(), metadata=md)
            assert app.app_id not in [a.app_id for a in listed.apps]
            for _ in range(50):
                try:
                    await stub.AppGetLayout(api_pb2.AppGetLayoutRequest(app_id=app.app_id), metadata=md)
                except Exception as exc:  # noqa: BLE001
                    assert "not found" in str(exc)
                    break
                time.sleep(0.2)
            else:
                pytest.fail(f"app {app.app_id} still exists after an abandoned deploy ({reason})")
    finally:
        channel.close()
