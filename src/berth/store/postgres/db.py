"""The asyncpg pool every PostgreSQL store shares: opening it (with a clear error when the database is
down), retrying statements whose connection was lost, and running migrations under an advisory lock.

Retries never double a write. A read, or a write that is idempotent (an upsert by key, a conditional
update, a delete), is simply run again. Any other write runs in an explicit transaction and is retried
only when the connection failed before COMMIT was sent: PostgreSQL rolls back the open transaction of a
connection that drops, so nothing of the failed attempt was applied. A failure while COMMIT is in flight
is ambiguous (it may have committed), so such a write is not retried and the caller sees the error."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from berth.errors import StoreUnavailable
from berth.store.migrations import load

log = logging.getLogger("berth.store.postgres")

T = TypeVar("T")
Conn = Any  # asyncpg.Connection or a pool proxy of one; asyncpg ships no type hints
_ATTEMPTS = 4
_CONNECT_ATTEMPTS = 3
# Any constant works; it names "berth schema migrations" among the advisory locks of this database.
_MIGRATION_LOCK = 0x6265727468


def redact(url: str) -> str:
    """The URL with its password (in the authority or the query) replaced by ***."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user, sep, _ = userinfo.partition(":")
        netloc = f"{user}{':***' if sep else ''}@{host}"
    query = urlencode([(k, "***" if k == "password" else v) for k, v in parse_qsl(parts.query)])
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def is_connection_error(exc: BaseException) -> bool:
    if isinstance(exc, asyncpg.InterfaceError):
        return "closed" in str(exc)  # "connection is closed"; other interface errors are our bugs
    retryable = (
        asyncpg.PostgresConnectionError,
        # A pooled connection the server ended while it sat idle (pg_terminate_backend, a restart) can be
        # out of step with its protocol: asyncpg refuses to send the next statement with this error.
        asyncpg.InternalClientError,
        asyncpg.CannotConnectNowError,
        asyncpg.AdminShutdownError,
        OSError,
        asyncio.TimeoutError,
    )
    return isinstance(exc, retryable)


async def lock_value(conn: Conn, *parts: object) -> None:
    """Serialise the transactions that write one value of a unique column until they commit. Two
    concurrent "delete the holder, then insert" replacements would otherwise both find nothing to delete
    and one would fail on the unique index; with the lock the second deletes what the first inserted."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", "\x1f".join(map(str, parts)))


def rowcount(status: str) -> int:
    """Rows a statement touched, from its command tag ("UPDATE 3", "INSERT 0 1", "DELETE 0")."""
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0


async def _backoff(attempt: int) -> None:
    await asyncio.sleep(min(2.0, 0.05 * 4**attempt))


class Database:
    def __init__(self, pool: Any, url: str) -> None:
        self._pool = pool
        self.url = redact(url)
        self._close_hooks: list[Callable[[], Awaitable[None]]] = []

    @classmethod
    async def open(cls, url: str, *, max_size: int = 10) -> Database:
        last: BaseException | None = None
        for attempt in range(_CONNECT_ATTEMPTS):
            try:
                pool = await asyncpg.create_pool(url, min_size=1, max_size=max_size, timeout=5.0)
                return cls(pool, url)
            except (TimeoutError, asyncpg.PostgresError, OSError) as exc:
                last = exc
                if not is_connection_error(exc):
                    break  # a wrong password or database name does not heal by waiting
                await _backoff(attempt + 1)
        raise StoreUnavailable(f"cannot connect to PostgreSQL at {redact(url)}: {last}") from last

    def on_close(self, hook: Callable[[], Awaitable[None]]) -> None:
        """Run before the pool closes (a store flushing what it queued)."""
        self._close_hooks.append(hook)

    async def close(self) -> None:
        for hook in self._close_hooks:
            await hook()
        await self._pool.close()

    async def _retry(self, op: Callable[[Conn], Awaitable[T]]) -> T:
        for attempt in range(_ATTEMPTS):
            try:
                async with self._pool.acquire() as conn:
                    try:
                        return await op(conn)
                    except Exception as exc:
                        if is_connection_error(exc):
                            # The pool opens a new connection instead of handing this one out again
                            # (asyncpg may already have detached it, which is just as good).
                            with contextlib.suppress(asyncpg.InterfaceError):
                                conn.terminate()
                        raise
            except Exception as exc:
                if not is_connection_error(exc):
                    raise
                if attempt == _ATTEMPTS - 1:
                    raise StoreUnavailable(f"lost the connection to PostgreSQL at {self.url}: {exc}") from exc
                log.warning("PostgreSQL connection lost (%s); retrying", exc)
                await _backoff(attempt)
        raise AssertionError("unreachable")

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        return list(await self._retry(lambda c: c.fetch(sql, *args)))

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        return await self._retry(lambda c: c.fetchrow(sql, *args))

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await self._retry(lambda c: c.fetchval(sql, *args))

    async def execute(self, sql: str, *args: Any) -> int:
        """An idempotent write (safe to run twice); returns the rows it touched."""
        return rowcount(await self._retry(lambda c: c.execute(sql, *args)))

    async def transaction(self, body: Callable[[Conn], Awaitable[T]], *, idempotent: bool = False) -> T:
        """Run BODY in one transaction; see the module docstring for when it is retried."""
        committing = False

        async def attempt(conn: Conn) -> T:
            nonlocal committing
            committing = False
            tx = conn.transaction()
            await tx.start()
            try:
                result = await body(conn)
            except BaseException:
                if not conn.is_closed():
                    # On a broken connection the rollback fails too; the server rolls back on its own.
                    with contextlib.suppress(Exception):
                        await tx.rollback()
                raise
            committing = True
            await tx.commit()
            return result

        async def guarded(conn: Conn) -> T:
            try:
                return await attempt(conn)
            except Exception as exc:
                if committing and not idempotent and is_connection_error(exc):
                    with contextlib.suppress(asyncpg.InterfaceError):
                        conn.terminate()
                    raise StoreUnavailable(
                        f"lost the connection to PostgreSQL at {self.url} while committing; not retried"
                    ) from exc
                raise

        return await self._retry(guarded)

    async def write(self, sql: str, *args: Any) -> Any:
        """A write that must not run twice (it inserts a row under a new serial, or adds to a counter)."""
        return await self.transaction(lambda c: c.fetch(sql, *args))

    async def migrate(self, source: str | Path = "postgres") -> list[int]:
        """Apply the missing migrations in order. An advisory lock makes replicas that start together
        take turns: the second waits, then finds the versions applied and applies nothing."""

        async def run(conn: Conn) -> list[int]:
            await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
            try:
                return await _apply_missing(conn, source)
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)

        return await self._retry(run)


async def _apply_missing(conn: Conn, source: str | Path) -> list[int]:
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
        "applied_at DOUBLE PRECISION NOT NULL DEFAULT extract(epoch FROM now()))"
    )
    done = {r[0] for r in await conn.fetch("SELECT version FROM schema_migrations")}
    applied: list[int] = []
    for migration in load(source):
        if migration.version in done:
            continue
        async with conn.transaction():
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO schema_migrations(version, name) VALUES ($1, $2)", migration.version, migration.name
            )
        applied.append(migration.version)
        log.info("applied PostgreSQL migration %04d_%s", migration.version, migration.name)
    return applied
