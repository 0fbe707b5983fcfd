"""Typed service errors. Each carries the gRPC status the edge maps it to, once, in api/chain.py."""

from __future__ import annotations

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
