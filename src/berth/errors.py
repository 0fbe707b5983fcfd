"""Typed service errors. Each carries the gRPC status the edge maps it to, once, in api/chain.py."""

from __future__ import annotations

import errno

from grpclib.const import Status


class BerthError(Exception):
    """Base class: an error a caller is meant to see, with the gRPC status that describes it."""

    status: Status = Status.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(BerthError):
    status = Status.NOT_FOUND


class InvalidArgument(BerthError):
    status = Status.INVALID_ARGUMENT


class Unauthenticated(BerthError):
    status = Status.UNAUTHENTICATED


class PermissionDenied(BerthError):
    status = Status.PERMISSION_DENIED


class ResourceExhausted(BerthError):
    status = Status.RESOURCE_EXHAUSTED


class FailedPrecondition(BerthError):
    status = Status.FAILED_PRECONDITION


class AlreadyExists(BerthError):
    status = Status.ALREADY_EXISTS


class Unimplemented(BerthError):
    status = Status.UNIMPLEMENTED


class Unavailable(BerthError):
    """A backing service (the blob store, a database) cannot be reached; worth retrying later."""


class StoreUnavailable(BerthError):
    """The database is down or unreachable (after retries). Its message names the database without secrets."""

    status = Status.UNAVAILABLE


class DiskFull(ResourceExhausted):
    """The server's data disk has no space left: writes fail until space returns; reads go on."""

    def __init__(self, detail: str = "") -> None:
        super().__init__(
            "Berth's data disk is full (no space left on device): the write was refused and nothing stored was "
            "changed; free space on the server and retry" + (f" ({detail})" if detail else "")
        )


_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def disk_full(exc: BaseException) -> DiskFull | None:
    """A DiskFull for an error caused, anywhere down its chain, by a full disk (ENOSPC, EDQUOT); else None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, DiskFull):
            return current
        if isinstance(current, OSError) and current.errno in _FULL_ERRNOS:
            return DiskFull()
        current = current.__cause__ or current.__context__
    return None
