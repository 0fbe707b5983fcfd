"""Credentials stay where they belong: a container's identity stops working when its task ends, and neither
client tokens nor secret values appear in the server's log."""

from __future__ import annotations

import asyncio
import uuid

from grpclib.client import Channel
from grpclib.exceptions import GRPCError
from modal_proto import api_grpc, api_pb2

from tests.e2e.conftest import APPS, BerthServer, last_json, modal, sdk, wait_for


def _heartbeat(berth: BerthServer, headers: str) -> str:
    """The status of a ContainerHeartbeat made with a container's credentials header ("OK" or the code)."""
    metadata = dict(pair.split(":", 1) for pair in headers.split(","))

    async def call() -> str:
        ch = Channel("127.0.0.1", berth.port)
        try:
            await api_grpc.ModalClientStub(ch).ContainerHeartbeat(
                api_pb2.ContainerHeartbeatRequest(), metadata=metadata, timeout=30
            )
            return "OK"
        except GRPCError as exc:
            return exc.status.name
        finally:
            ch.close()

    return asyncio.run(call())


def test_a_containers_identity_stops_working_when_its_task_ends(berth: BerthServer) -> None:
    value = f"sv-{uuid.uuid4().hex}"
    made = modal(berth, "secret", "create", "--force", "e2e-identity-secret", f"IDENTITY_VALUE={value}")
    assert made.returncode == 0, made.output
    deployed = modal(berth, "deploy", str(APPS / "identity_app.py"))
    assert deployed.returncode == 0, deployed.output
    seen = last_json(
        sdk(
            berth,
            "import json, modal\nprint(json.dumps(modal.Function.from_name('e2e-identity', 'identity').remote()))",
        )
    )
    assert seen["task_id"] in seen["headers"]
    assert _heartbeat(berth, seen["headers"]) == "OK"  # the container is alive (deployed, warm): it is accepted
    assert modal(berth, "app", "stop", "--yes", "e2e-identity").returncode == 0
    wait_for(lambda: _heartbeat(berth, seen["headers"]) == "UNAUTHENTICATED", "the ended task's identity refused", 90)
    # Nothing that is a credential or a secret value reached the server's log.
    log = berth.log()
    assert value not in log
    assert berth.env["MODAL_TOKEN_SECRET"] not in log
    secret_part = seen["headers"].split("x-berth-task-secret:")[1].split(",")[0]
    assert secret_part not in log
