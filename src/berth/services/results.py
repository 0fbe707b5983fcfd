"""GenericResult helpers shared by the services that finish inputs."""

from __future__ import annotations

from modal_proto import api_pb2

GS = api_pb2.GenericResult


def failure(message: str, status: int = GS.GENERIC_STATUS_FAILURE) -> api_pb2.GenericResult:
    return api_pb2.GenericResult(status=status, exception=message, traceback=message)  # type: ignore[arg-type]


def terminated(message: str = "Input was cancelled") -> api_pb2.GenericResult:
    return failure(message, GS.GENERIC_STATUS_TERMINATED)


def timed_out(seconds: float) -> api_pb2.GenericResult:
    return failure(f"Function timed out after {seconds:g} seconds", GS.GENERIC_STATUS_TIMEOUT)


RETRYABLE = frozenset({GS.GENERIC_STATUS_FAILURE, GS.GENERIC_STATUS_TIMEOUT, GS.GENERIC_STATUS_INTERNAL_FAILURE})


def retry_delay_s(policy: api_pb2.FunctionRetryPolicy, attempt: int) -> float:
    """Delay before retry number `attempt` (1-based), as Modal's Retries computes it."""
    initial = (policy.initial_delay_ms or 1000) / 1000
    coefficient = policy.backoff_coefficient or 2.0
    ceiling = (policy.max_delay_ms or 60_000) / 1000
    return float(min(initial * coefficient ** (attempt - 1), ceiling))
