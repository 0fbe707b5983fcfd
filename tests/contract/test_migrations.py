"""Contract of the versioned schema migrations of both SQL backends: fresh, re-opened, ordered, atomic,
applied once by replicas that start together, and a SQLite data dir from before migrations."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from pathlib import Path

import asyncpg
import pytest

from berth.config import Settings
from berth.store import migrations
from berth.store.factory import open_stores
from berth.store.postgres import Database
from berth.store.records import AppRecord, DeploymentRecord
from berth.store.sqlite.migrate import migrate as sqlite_migrate

LATEST = migrations.latest("sqlite")


@pytest.fixture(params=["sqlite", "postgres"])
def empty_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Settings of a database with no tables at all."""
    url = request.getfixturevalue("fresh_postgres_url") if request.param == "postgres" else ""
    return Settings(data_dir=tmp_path / "data", database_url=url)


async def _versions(settings: Settings) -> list[int]:
    if not settings.database_url:
        with sqlite3.connect(settings.db_path) as db:
            return [r[0] for r in db.execute("SELECT version FROM schema_migrations ORDER BY version")]
    conn = await asyncpg.connect(settings.database_url)
    try:
        return [r[0] for r in await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")]
    finally:
        await conn.close()


async def _migrate(settings: Settings, folder: Path) -> list[int]:
    if not settings.database_url:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(settings.db_path, isolation_level=None)
        try:
            return sqlite_migrate(db, folder)
        finally:
            db.close()
    pg = await Database.open(settings.database_url)
    try:
        return await pg.migrate(folder)
    finally:
        await pg.close()


def test_both_backends_ship_the_same_migration_versions() -> None:
    assert [m.version for m in migrations.load("sqlite")] == [m.version for m in migrations.load("postgres")]
    assert LATEST >= 1


async def test_a_fresh_database_is_migrated_to_the_latest_version(empty_settings: Settings) -> None:
    stores = await open_stores(empty_settings)
    await stores.close()
    assert await _versions(empty_settings) == list(range(1, LATEST + 1))


async def test_reopening_applies_nothing_and_keeps_the_data(empty_settings: Settings) -> None:
    stores = await open_stores(empty_settings)
    await stores.core.put_app(AppRecord("ap-1", "web", "", 1, "main", 1.0))
    await stores.close()
    reopened = await open_stores(empty_settings)
    try:
        assert await reopened.core.get_app("ap-1") is not None
    finally:
        await reopened.close()
    assert await _versions(empty_settings) == list(range(1, LATEST + 1))


async def test_migrations_apply_in_version_order_and_only_once(empty_settings: Settings, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    # Written newest first, and 0002 only works after 0001: the order must come from the numbers.
    (folder / "0002_add_column.sql").write_text("ALTER TABLE things ADD COLUMN size INTEGER NOT NULL DEFAULT 0;\n")
    (folder / "0001_things.sql").write_text("-- a table\nCREATE TABLE things (id TEXT PRIMARY KEY);\n")
    (folder / "README.txt").write_text("not a migration")
    assert await _migrate(empty_settings, folder) == [1, 2]
    assert await _migrate(empty_settings, folder) == []
    (folder / "0003_index.sql").write_text("CREATE INDEX things_size ON things(size);\n")
    assert await _migrate(empty_settings, folder) == [3]
    assert await _versions(empty_settings) == [1, 2, 3]


async def test_a_failing_migration_leaves_nothing_behind(empty_settings: Settings, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "0001_ok.sql").write_text("CREATE TABLE a (id TEXT);\n")
    (folder / "0002_broken.sql").write_text("CREATE TABLE b (id TEXT);\nCREATE TABLE a (id TEXT);\n")
    with pytest.raises(Exception, match="already exists"):
        await _migrate(empty_settings, folder)
    assert await _versions(empty_settings) == [1]
    (folder / "0002_broken.sql").write_text("CREATE TABLE b (id TEXT);\n")
    assert await _migrate(empty_settings, folder) == [2]


async def test_replicas_starting_together_apply_each_migration_once(empty_settings: Settings) -> None:
    if empty_settings.database_url:
        applied = await asyncio.gather(*[_migrate(empty_settings, _packaged("postgres")) for _ in range(6)])
    else:
        # Separate connections in threads: SQLite's write lock is what serialises them.
        applied = await asyncio.gather(*[asyncio.to_thread(_sqlite_open_migrate, empty_settings) for _ in range(6)])
    assert sorted(v for versions in applied for v in versions) == list(range(1, LATEST + 1))


def _packaged(backend: str) -> Path:
    return Path(migrations.__file__).parent / backend


def _sqlite_open_migrate(settings: Settings) -> list[int]:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(settings.db_path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA busy_timeout=10000")
    try:
        return sqlite_migrate(db)
    finally:
        db.close()


async def test_a_sqlite_data_dir_made_before_versioned_migrations_opens_at_the_latest_version(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    settings.data_dir.mkdir()
    # What the code before migrations did: run the idempotent schema script, with no schema_migrations table.
    old = sqlite3.connect(settings.db_path, isolation_level=None)
    old.executescript(migrations.load("sqlite")[0].sql)
    old.execute("INSERT INTO apps VALUES ('ap-old', 'web', '', 1, 'main', 1.0, NULL)")
    old.close()
    stores = await open_stores(settings)
    try:
        assert await stores.core.get_app("ap-old") is not None
    finally:
        await stores.close()
    assert await _versions(settings) == list(range(1, LATEST + 1))


async def test_deployments_from_before_0011_get_their_type_from_the_version_they_refer_to(
    empty_settings: Settings, tmp_path: Path
) -> None:
    backend = "postgres" if empty_settings.database_url else "sqlite"
    folder = tmp_path / "migrations"
    folder.mkdir()
    for migration in sorted(_packaged(backend).glob("00*.sql")):
        if int(migration.name[:4]) <= 10:
            shutil.copy(migration, folder)
    blob = "'\\x73'::bytea" if empty_settings.database_url else "x'73'"
    # v1 deployed, v2 rolled over (refers to v1), v3 rolled back to v1, v4 deployed: rows as 0010 stored them.
    rows = ", ".join(
        f"('ap-1', {v}, {v}.0, '', '', {back}, {blob}, {blob})" for v, back in [(1, 0), (2, 1), (3, 1), (4, 0)]
    )
    (folder / "0010_queued_index.sql").write_text(
        (folder / "0010_queued_index.sql").read_text() + f"\nINSERT INTO deployments VALUES {rows};\n"
    )
    assert await _migrate(empty_settings, folder) == list(range(1, 11))
    stores = await open_stores(empty_settings)
    try:
        found = [(d.version, d.deployment_type) for d in await stores.history.deployments("ap-1")]
        await stores.history.add_deployment(DeploymentRecord("ap-1", 5, 5.0, "", "", 0, b"", b"s", 5))
        assert (await stores.history.deployments("ap-1"))[-1].deployment_type == 5
    finally:
        await stores.close()
    assert found == [(1, 1), (2, 3), (3, 2), (4, 1)]  # standard, rollover, rollback, standard
