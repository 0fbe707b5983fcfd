"""The gRPC edge: every generated RPC is routed, unserved ones answer UNIMPLEMENTED by name."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from modal_proto import api_pb2

from berth.api.chain import build_mapping
from berth.server import generated_handlers
from berth.services.catalog import apply_options, handle_metadata
from berth.services.notify import Notifier


class _Auth:
    async def client(self, token_id: str, token_secret: str) -> str | None:
        return ""

    async def container(self, task_id: str, secret: str) -> bool:
        return False


class _OneRpc:
    async def AppHeartbeat(self, req: Any, caller: Any) -> Any:
        raise AssertionError("not called")


class _Stream:
    metadata = {"x-modal-token-id": "a", "x-modal-token-secret": "b"}


def test_every_generated_rpc_has_a_handler() -> None:
    generated = generated_handlers()
    mapping = build_mapping(generated, _OneRpc(), _Auth(), 1024)
    assert set(mapping) == set(generated)
    assert len(mapping) > 250


def test_unserved_rpc_raises_unimplemented_with_its_name() -> None:
    mapping = build_mapping(generated_handlers(), _OneRpc(), _Auth(), 1024)
    handler = mapping["/modal.client.ModalClient/SandboxCreate"].func
    with pytest.raises(GRPCError) as info:
        asyncio.run(handler(_Stream()))
    assert info.value.status == Status.UNIMPLEMENTED
    assert "SandboxCreate" in (info.value.message or "")


def test_streaming_impl_for_unary_rpc_is_rejected() -> None:
    class Wrong:
        async def AppHeartbeat(self, req: Any, caller: Any) -> Any:
            yield None

    with pytest.raises(TypeError):
        build_mapping(generated_handlers(), Wrong(), _Auth(), 1024)


def test_class_handle_metadata_lists_every_method() -> None:
    fn = api_pb2.Function(function_name="Model.*", is_class=True)
    fn.method_definitions["predict"].function_name = "Model.predict"
    md = handle_metadata(fn, "ap-1")
    assert md.method_handle_metadata["predict"].use_method_name == "predict"
    assert md.method_handle_metadata["predict"].is_method


def test_options_override_only_what_they_set() -> None:
    fn = api_pb2.Function(timeout_secs=300, max_concurrent_inputs=1, secret_ids=["st-a"])
    options = api_pb2.FunctionOptions(timeout_secs=30, secret_ids=["st-b"])
    bound = apply_options(fn, options)
    assert (bound.timeout_secs, bound.max_concurrent_inputs, list(bound.secret_ids)) == (30, 1, ["st-a", "st-b"])


async def test_waiter_registered_before_a_notification_sees_it() -> None:
    notifier = Notifier()
    with notifier.listen("k") as waiter:
        notifier.notify("k")
        assert await waiter.wait(0.01)
    with notifier.listen("k") as waiter:
        assert not await waiter.wait(0.01)


def test_rpc_coverage_doc_is_current() -> None:
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    fresh = subprocess.run(
        [sys.executable, root / "scripts" / "rpc_coverage.py"], capture_output=True, text=True, check=True
    ).stdout
    assert fresh == (root / "docs" / "rpc-coverage.md").read_text(), "run `make coverage`"


def test_every_served_rpc_is_annotated_with_the_generated_reply_type() -> None:
    import typing

    from berth.api.service import ModalServicer

    for path, handler in generated_handlers().items():
        rpc = path.rsplit("/", 1)[1]
        impl = getattr(ModalServicer, rpc, None)
        if impl is None:
            continue
        hints = typing.get_type_hints(impl)
        reply = hints["return"]
        if typing.get_origin(reply) is not None:  # AsyncIterator[Reply] for streaming RPCs
            (reply,) = typing.get_args(reply)
        assert reply is handler.reply_type, f"{rpc} returns {reply}, the service expects {handler.reply_type}"
        assert hints["req"] is handler.request_type, f"{rpc} takes {hints['req']}, expected {handler.request_type}"
