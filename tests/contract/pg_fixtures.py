"""PostgreSQL for the contract suite: one throwaway server per test session (berth.devservices.postgres),
and a clean database for each test that asks for one."""

from __future__ import annotations

import asyncio
import itertools
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from berth.devservices import postgres as devpg

_names = itertools.count()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[devpg.LocalPostgres]:
    """A PostgreSQL on 127.0.0.1 (random port), data and socket in a temp dir; stopped and removed at the end.
    Missing binaries fail the suite: CI installs them, and a skip would hide a backend going untested."""
    # Under /tmp, not pytest's tmp_path: as root the server runs as `postgres`, which cannot enter a 0700 root dir.
    root = Path(tempfile.mkdtemp(prefix="berth-pg-"))
    try:
        server = devpg.start(root)
    except devpg.PostgresUnavailable as exc:
        problem = str(exc)
    else:
        problem = ""
    if problem:
        shutil.rmtree(root, ignore_errors=True)
        hint = "" if "setup-services.sh" in problem else f" ({devpg.SETUP_HINT})"
        pytest.fail(f"PostgreSQL is needed by the contract suite: {problem}{hint}", pytrace=False)
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


async def _admin(server: devpg.LocalPostgres, sql: str, database: str = "postgres") -> None:
    conn = await asyncpg.connect(server.url(database))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


_EMPTY_ALL_TABLES = """
DO $$ DECLARE tables text; BEGIN
    SELECT string_agg(quote_ident(tablename), ', ') INTO tables
    FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'schema_migrations';
    IF tables IS NOT NULL THEN EXECUTE 'TRUNCATE ' || tables || ' RESTART IDENTITY'; END IF;
END $$
"""


@pytest.fixture(scope="session")
def _shared_database(postgres_server: devpg.LocalPostgres) -> str:
    asyncio.run(_admin(postgres_server, "CREATE DATABASE contract"))
    return "contract"


@pytest.fixture
def postgres_url(postgres_server: devpg.LocalPostgres, _shared_database: str) -> str:
    """The URL of a clean database: every table empty, migrations kept. CREATE DATABASE takes about a
    second here and TRUNCATE a tenth of one, so tests share one database and empty it first.
    A plain fixture (its own short event loop) so that sync fixtures can ask for it too."""
    asyncio.run(_admin(postgres_server, _EMPTY_ALL_TABLES, _shared_database))
    return postgres_server.url(_shared_database)


@pytest.fixture
def fresh_postgres_url(postgres_server: devpg.LocalPostgres) -> Iterator[str]:
    """The URL of a new database with no tables at all (for migration tests); dropped after the test."""
    name = f"fresh{next(_names)}"
    asyncio.run(_admin(postgres_server, f"CREATE DATABASE {name}"))
    yield postgres_server.url(name)
    asyncio.run(_admin(postgres_server, f"DROP DATABASE {name} WITH (FORCE)"))
