"""Opens the stores a server uses, one object per port, from the settings. The embedded default puts
every aggregate in one SQLite file; with a database URL every aggregate goes to PostgreSQL. The
scale-out backends plug in here and nowhere else. Opening applies the schema migrations."""

from __future__ import annotations

from dataclasses import dataclass

from berth.config import Settings
from berth.store.ports import CoreStore, HistoryStore, StateStore, WebStore


@dataclass
class Stores:
    core: CoreStore
    history: HistoryStore
    state: StateStore
    web: WebStore

    async def close(self) -> None:
        await self.core.close()


async def open_stores(settings: Settings) -> Stores:
    if settings.database_url:
        return await _open_postgres(settings.database_url)
    return await _open_sqlite(settings)


async def _open_postgres(url: str) -> Stores:
    from berth.store.postgres import (
        Database,
        PostgresCoreStore,
        PostgresHistoryStore,
        PostgresStateStore,
        PostgresWebStore,
    )

    db = await Database.open(url)
    try:
        await db.migrate()
    except BaseException:
        await db.close()
        raise
    return Stores(PostgresCoreStore(db), PostgresHistoryStore(db), PostgresStateStore(db), PostgresWebStore(db))


async def _open_sqlite(settings: Settings) -> Stores:
    from berth.store.sqlite import SqliteStore
    from berth.store.sqlite.deployments import DeploymentStore as SqliteDeployments
    from berth.store.sqlite.state import SqliteStateStore
    from berth.store.sqlite.web import WebStore as SqliteWeb

    core = await SqliteStore.open(settings.db_path)
    return Stores(
        core, SqliteDeployments(core.connection), SqliteStateStore(core.connection), SqliteWeb(core.connection)
    )
