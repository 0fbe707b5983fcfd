"""Who is calling: a client holding a token, or a container holding its task's secret."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class Caller:
    request_id: str
    rpc: str
    token_id: str | None = None
    task_id: str | None = None
    environment: str | None = None
    client_version: str = ""
    client_type: int = 0  # x-modal-client-type: api_pb2.ClientType (the Python client, libmodal JS/Go, ...)
    prefetch: int = 0  # x-berth-prefetch: how many queued inputs Berth's container loop takes in one FunctionGetInputs

    @property
    def is_container(self) -> bool:
        return self.task_id is not None


current_caller: ContextVar[Caller | None] = ContextVar("current_caller", default=None)
