"""An RPC fuzzer for Berth's gRPC API, with Hypothesis strategies generated from the `modal_proto` descriptors.

Every served RPC gets well-formed requests with extreme values (huge strings and repeated fields, negative
and maximum integers, unknown enum values, names with `../`, NUL and unicode tricks, ids that exist in no
environment or in another one), and the server's answer is checked: a proper gRPC status, never INTERNAL
(an unhandled exception) and never a traceback. `raw_requests` gives the malformed kind: random bytes,
truncated messages and messages of another type, sent through a codec that passes bytes through."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from grpclib.client import Channel
from grpclib.const import Cardinality, Status
from grpclib.encoding.base import CodecBase
from grpclib.exceptions import GRPCError, StreamTerminatedError
from hypothesis import strategies as st
from modal_proto import api_grpc, api_pb2

INT32 = (0, 1, -1, 2**31 - 1, -(2**31), 7)
INT64 = (*INT32, 2**63 - 1, -(2**63), 2**53 + 1)
UINT32 = (0, 1, 2**32 - 1, 255)
UINT64 = (*UINT32, 2**64 - 1)
FLOATS = (0.0, -1.0, 1e308, -1e308, float("inf"), float("-inf"), float("nan"), 1e-320, 0.5)
TRICKY_TEXT = (
    "",
    "../../../../etc/passwd",
    "/etc/shadow",
    "..",
    "a/../../b",
    "nul\x00byte",
    "\u202eevil\u202d",  # right-to-left override
    "e\u0301",  # combining accent
    "\ufeffbom",
    "ℌ𝔢𝔩𝔩𝔬",
    "main",
    "ap-" + "0" * 22,
    "fc-doesnotexistdoesnotexist",
    "vo-doesnotexistdoesnotexist",
    "di-doesnotexistdoesnotexist",
    "sb-doesnotexistdoesnotexist",
    "ta-doesnotexistdoesnotexist",
    "other-env",
    "%s%s%n",
    "' OR 1=1 --",
    "x" * 70_000,
)
HUGE_REPEATED = 5_000


def _scalar(fd: FieldDescriptor, ids: Sequence[str]) -> st.SearchStrategy[Any]:
    t = fd.type
    if t in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SFIXED32):
        return st.sampled_from(INT32) | st.integers(-(2**31), 2**31 - 1)
    if t in (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_SFIXED64):
        return st.sampled_from(INT64) | st.integers(-(2**63), 2**63 - 1)
    if t in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32):
        return st.sampled_from(UINT32) | st.integers(0, 2**32 - 1)
    if t in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64):
        return st.sampled_from(UINT64) | st.integers(0, 2**64 - 1)
    if t in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        floats = st.sampled_from(FLOATS) | st.floats(allow_nan=True, allow_infinity=True)
        if t == FieldDescriptor.TYPE_FLOAT:
            floats = floats.map(lambda x: x if abs(x) < 3e38 or x != x or abs(x) == float("inf") else 1e38)
        return floats
    if t == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if t == FieldDescriptor.TYPE_STRING:
        return st.sampled_from(TRICKY_TEXT) | st.sampled_from(list(ids) or ["x"]) | st.text(max_size=40)
    if t == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64) | st.just(b"\x00" * 100_000) | st.just(b"\x80\x81not-a-pickle")
    if t == FieldDescriptor.TYPE_ENUM:
        known = [v.number for v in fd.enum_type.values]
        return st.sampled_from(known) | st.sampled_from([-1, 999, 2**31 - 1])  # proto3 enums are open
    raise TypeError(f"no strategy for field type {t}")


@st.composite
def messages(draw: st.DrawFn, descriptor: Descriptor, ids: Sequence[str] = (), depth: int = 0) -> Message:
    """A message of `descriptor`'s type with a random subset of its fields set to extreme values."""
    cls = _message_class(descriptor)
    msg = cls()
    oneofs_set: set[str] = set()
    for fd in descriptor.fields:
        if not draw(st.booleans()):
            continue
        if fd.containing_oneof is not None:
            if fd.containing_oneof.name in oneofs_set:
                continue
            oneofs_set.add(fd.containing_oneof.name)
        if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            key_fd, value_fd = fd.message_type.fields_by_name["key"], fd.message_type.fields_by_name["value"]
            if value_fd.message_type is not None:
                continue  # maps of messages: rare, and set through their own RPCs
            entries = draw(st.dictionaries(_scalar(key_fd, ids), _scalar(value_fd, ids), max_size=4))
            getattr(msg, fd.name).update(entries)
            continue
        if fd.message_type is not None:
            if depth >= 2:
                continue
            if fd.is_repeated:
                for sub in draw(st.lists(messages(fd.message_type, ids, depth + 1), max_size=3)):
                    getattr(msg, fd.name).add().CopyFrom(sub)
            else:
                getattr(msg, fd.name).CopyFrom(draw(messages(fd.message_type, ids, depth + 1)))
            continue
        value = _scalar(fd, ids)
        if fd.is_repeated:
            many = draw(st.sampled_from([0, 1, 3, HUGE_REPEATED]))
            getattr(msg, fd.name).extend([draw(value)] * many)
        else:
            with contextlib.suppress(ValueError, TypeError):  # a float out of a float32's range, say
                setattr(msg, fd.name, draw(value))
    return msg


def _message_class(descriptor: Descriptor) -> type[Message]:
    from google.protobuf import message_factory

    return message_factory.GetMessageClass(descriptor)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Rpc:
    name: str
    cardinality: Cardinality
    request: type[Message]
    reply: type[Message]

    @property
    def path(self) -> str:
        return f"/modal.client.ModalClient/{self.name}"


def rpcs() -> list[Rpc]:
    mapping = api_grpc.ModalClientBase.__mapping__(_Dummy())  # type: ignore[arg-type]
    return [
        Rpc(path.rsplit("/", 1)[1], h.cardinality, h.request_type, h.reply_type) for path, h in sorted(mapping.items())
    ]


class _Dummy:
    def __getattr__(self, name: str) -> Any:
        return None


class RawCodec(CodecBase):
    """Sends bytes as they are: random bytes, truncated messages, messages of another type."""

    __content_subtype__ = "proto"

    def encode(self, message: Any, message_type: Any) -> bytes:
        return message if isinstance(message, bytes) else message.SerializeToString()  # type: ignore[no-any-return]

    def decode(self, data: bytes, message_type: Any) -> bytes:
        return data


@dataclass
class Outcome:
    status: str  # a gRPC status name, "OK", or "DEADLINE" when the client's deadline ran out
    message: str = ""


@dataclass
class Tally:
    sent: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    defects: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)

    def add(self, rpc: str, outcome: Outcome, latency: float, what: str) -> None:
        self.sent += 1
        self.by_status[outcome.status] = self.by_status.get(outcome.status, 0) + 1
        self.latencies.append(latency)
        defect = judge(outcome)
        if defect:
            self.defects.append(f"{rpc} ({what}): {defect}")


def judge(outcome: Outcome) -> str | None:
    """Why this answer is a defect, or None. Any proper status but INTERNAL/UNKNOWN is fine for junk input."""
    if outcome.status in ("INTERNAL", "UNKNOWN", "DATA_LOSS"):
        return f"{outcome.status}: {outcome.message[:300]}"
    if "Traceback (most recent call last)" in outcome.message or 'File "/' in outcome.message:
        return f"traceback leaked: {outcome.message[:300]}"
    if outcome.status == "UNIMPLEMENTED" and "Berth does not" not in outcome.message:
        return f"UNIMPLEMENTED without naming what: {outcome.message[:200]}"
    if outcome.status == "BROKEN":
        return f"connection broken: {outcome.message[:200]}"
    return None


async def send(
    channel: Channel, rpc: Rpc, request: Message | bytes, metadata: dict[str, str], timeout: float
) -> Outcome:
    try:
        async with channel.request(
            rpc.path, rpc.cardinality, type(request), rpc.reply, timeout=timeout, metadata=metadata
        ) as stream:
            await stream.send_message(request, end=True)
            if rpc.cardinality == Cardinality.UNARY_STREAM:
                n = 0
                async for _ in stream:
                    n += 1
                    if n >= 20:  # a stream that keeps going (logs): enough seen
                        await stream.cancel()
                        return Outcome("OK")
            else:
                await stream.recv_message()
                await stream.recv_trailing_metadata()
        return Outcome("OK")
    except GRPCError as exc:
        return Outcome(exc.status.name, exc.message or "")
    except TimeoutError:
        return Outcome("DEADLINE")
    except (StreamTerminatedError, ConnectionError, OSError) as exc:
        return Outcome("BROKEN", f"{type(exc).__name__}: {exc}")


def raw_requests(rpc: Rpc, other: Message, seed: int) -> list[tuple[str, bytes]]:
    """Malformed bodies for one RPC: random bytes, a truncated valid message, a message of another type."""
    import random

    rng = random.Random(seed)
    full = other.SerializeToString()
    cases = [
        ("random bytes", rng.randbytes(rng.randint(1, 200))),
        ("invalid wire type", b"\x0f\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"),
        ("length past the end", b"\x0a\xff\xff\x03abc"),
    ]
    if len(full) > 2:
        cases.append(("truncated message", full[: len(full) // 2]))
    cases.append(("message of another type", full))
    return cases


def status_is(code: Status) -> str:
    return code.name


__all__ = ["Rpc", "RawCodec", "Tally", "api_pb2", "messages", "raw_requests", "rpcs", "send"]
