"""Bad input gets a clear gRPC status and the server keeps serving. Driven through the generated
stubs that ship in the modal wheel, with the same metadata the modal client sends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import wrappers_pb2
from grpclib.client import Channel
from grpclib.const import Cardinality, Status
from grpclib.exceptions import GRPCError
from modal_proto import api_grpc, api_pb2

from tests.e2e.conftest import BerthServer, python


@pytest.fixture
async def channel(berth: BerthServer) -> AsyncIterator[Channel]:
    ch = Channel("127.0.0.1", berth.port)
    yield ch
    ch.close()


def token_metadata(berth: BerthServer, secret: str | None = None) -> dict[str, str]:
    env = berth.env
    return {
        "x-modal-client-type": "1",
        "x-modal-client-version": "1.6.4",
        "x-modal-token-id": env["MODAL_TOKEN_ID"],
        "x-modal-token-secret": secret if secret is not None else env["MODAL_TOKEN_SECRET"],
    }


async def status_of(call: Callable[[], Awaitable[Any]]) -> tuple[Status, str]:
    with pytest.raises(GRPCError) as info:
        await call()
    return info.value.status, info.value.message or ""


async def test_wrong_token_is_unauthenticated(berth: BerthServer, channel: Channel) -> None:
    stub = api_grpc.ModalClientStub(channel)
    code, _ = await status_of(
        lambda: stub.AppCreate(api_pb2.AppCreateRequest(), metadata=token_metadata(berth, "not-the-secret"))
    )
    assert code == Status.UNAUTHENTICATED


async def test_missing_token_is_unauthenticated(channel: Channel) -> None:
    stub = api_grpc.ModalClientStub(channel)
    code, message = await status_of(lambda: stub.AppCreate(api_pb2.AppCreateRequest()))
    assert code == Status.UNAUTHENTICATED
    assert "Token missing" in message


async def test_unknown_ids_are_not_found(berth: BerthServer, channel: Channel) -> None:
    stub = api_grpc.ModalClientStub(channel)
    md = token_metadata(berth)
    code, message = await status_of(
        lambda: stub.AppHeartbeat(api_pb2.AppHeartbeatRequest(app_id="ap-doesnotexist"), metadata=md)
    )
    assert (code, message) == (Status.NOT_FOUND, "App ap-doesnotexist not found")
    code, _ = await status_of(lambda: stub.FunctionMap(api_pb2.FunctionMapRequest(function_id="fu-nope"), metadata=md))
    assert code == Status.NOT_FOUND
    code, _ = await status_of(
        lambda: stub.FunctionGetOutputs(api_pb2.FunctionGetOutputsRequest(function_call_id="fc-nope"), metadata=md)
    )
    assert code == Status.NOT_FOUND


async def test_unserved_rpc_is_unimplemented_and_named(berth: BerthServer, channel: Channel) -> None:
    stub = api_grpc.ModalClientStub(channel)
    code, message = await status_of(
        lambda: stub.DomainCreate(api_pb2.DomainCreateRequest(domain_name="x.example"), metadata=token_metadata(berth))
    )
    assert code == Status.UNIMPLEMENTED
    assert "DomainCreate" in message


async def test_undecodable_request_is_invalid_argument(berth: BerthServer, channel: Channel) -> None:
    # Field 1 of AppCreateRequest is a string; invalid UTF-8 there cannot be decoded.
    method = channel.request(
        "/modal.client.ModalClient/AppCreate",
        Cardinality.UNARY_UNARY,
        wrappers_pb2.BytesValue,
        api_pb2.AppCreateResponse,
        metadata=token_metadata(berth),
    )

    async def call() -> None:
        async with method as stream:
            await stream.send_message(wrappers_pb2.BytesValue(value=b"\xff\xfe\xfd"), end=True)
            await stream.recv_message()

    code, _ = await status_of(call)
    assert code == Status.INVALID_ARGUMENT


async def test_incomplete_request_is_invalid_argument(berth: BerthServer, channel: Channel) -> None:
    stub = api_grpc.ModalClientStub(channel)
    code, _ = await status_of(
        lambda: stub.FunctionCreate(api_pb2.FunctionCreateRequest(app_id="ap-x"), metadata=token_metadata(berth))
    )
    assert code == Status.INVALID_ARGUMENT


async def test_oversized_inline_argument_is_resource_exhausted(berth: BerthServer, channel: Channel) -> None:
    stub = api_grpc.ModalClientStub(channel)
    md = token_metadata(berth)
    app = await stub.AppCreate(api_pb2.AppCreateRequest(description="oversize"), metadata=md)
    fn = api_pb2.Function(function_name="f", module_name="m", definition_type=api_pb2.Function.DEFINITION_TYPE_FILE)
    created = await stub.FunctionCreate(api_pb2.FunctionCreateRequest(app_id=app.app_id, function=fn), metadata=md)
    big = api_pb2.FunctionPutInputsItem(idx=0, input=api_pb2.FunctionInput(args=b"x" * (3 * 1024 * 1024)))
    code, message = await status_of(
        lambda: stub.FunctionMap(
            api_pb2.FunctionMapRequest(function_id=created.function_id, pipelined_inputs=[big]), metadata=md
        )
    )
    assert code == Status.RESOURCE_EXHAUSTED
    assert "blob" in message
    await stub.AppClientDisconnect(api_pb2.AppClientDisconnectRequest(app_id=app.app_id), metadata=md)


async def test_forged_container_identity_is_refused(channel: Channel) -> None:
    stub = api_grpc.ModalClientStub(channel)
    forged = {"x-modal-client-type": "3", "x-berth-task-id": "ta-someoneelse", "x-berth-task-secret": "guess"}
    code, _ = await status_of(lambda: stub.FunctionGetInputs(api_pb2.FunctionGetInputsRequest(), metadata=forged))
    assert code == Status.UNAUTHENTICATED


async def test_client_token_cannot_take_container_inputs(berth: BerthServer, channel: Channel) -> None:
    stub = api_grpc.ModalClientStub(channel)
    code, _ = await status_of(
        lambda: stub.FunctionGetInputs(api_pb2.FunctionGetInputsRequest(), metadata=token_metadata(berth))
    )
    assert code == Status.PERMISSION_DENIED


def test_container_cannot_take_or_answer_another_functions_inputs(berth: BerthServer, tmp_path: Path) -> None:
    run = python(berth, "identity.py", str(tmp_path / "victim-input"), timeout=120)
    assert run.returncode == 0, run.output
    assert "get_inputs_other=PERMISSION_DENIED" in run.stdout
    assert "put_outputs_other=PERMISSION_DENIED" in run.stdout
    assert "victim=ok" in run.stdout


def test_server_keeps_serving_after_bad_requests(berth: BerthServer) -> None:
    async def hello() -> str:
        ch = Channel("127.0.0.1", berth.port)
        try:
            stub = api_grpc.ModalClientStub(ch)
            resp = await stub.AppCreate(api_pb2.AppCreateRequest(description="after"), metadata=token_metadata(berth))
            return str(resp.app_id)
        finally:
            ch.close()

    assert asyncio.run(hello()).startswith("ap-")
