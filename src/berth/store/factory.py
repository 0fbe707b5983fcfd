"""Opens the stores a server uses, one object per port, from the settings. The embedded default puts
every aggregate in one SQLite file; with a database URL every aggregate goes to PostgreSQL. The
scale-out backends plug in here and nowhere else. Opening applies the schema migrations."""

from __future__ import annotations

from berth.config import Settings
from berth.store.ports import BlobStore, LogFanout, Stores, WakeBus


async def open_stores(settings: Settings) -> Stores:
    if settings.database_url:
        stores = await _open_postgres(settings.database_url)
    else:
        stores = await _open_sqlite(settings)
    if settings.redis_url:
        _contents_on_redis(stores, settings.redis_url)
    return stores


async def _open_postgres(url: str) -> Stores:
    from berth.store.postgres import (
        Database,
        PostgresCoreStore,
        PostgresGovernanceStore,
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
    return Stores(
        PostgresCoreStore(db),
        PostgresHistoryStore(db),
        PostgresStateStore(db),
        PostgresWebStore(db),
        PostgresGovernanceStore(db),
    )


async def _open_sqlite(settings: Settings) -> Stores:
    from berth.store.sqlite import SqliteStore
    from berth.store.sqlite.deployments import DeploymentStore as SqliteDeployments
    from berth.store.sqlite.governance import SqliteGovernanceStore
    from berth.store.sqlite.state import SqliteStateStore
    from berth.store.sqlite.web import WebStore as SqliteWeb

    core = await SqliteStore.open(settings.db_path)
    return Stores(
        core,
        SqliteDeployments(core.connection),
        SqliteStateStore(core.connection),
        SqliteWeb(core.connection),
        SqliteGovernanceStore(core.connection),
    )


def _contents_on_redis(stores: Stores, url: str) -> None:
    """Dict and queue contents move to Redis; the state objects stay where they are."""
    from redis.asyncio import Redis

    from berth.store.composed import ComposedStateStore
    from berth.store.redis import RedisDictStore, RedisQueueStore

    client = Redis.from_url(url)
    stores.state = ComposedStateStore(stores.state, RedisDictStore(client), RedisQueueStore(client))
    stores.closers.append(client.aclose)


def open_wake_bus(settings: Settings) -> WakeBus | None:
    """The bus that carries wake-ups between server replicas; None for a single process."""
    if not settings.redis_url:
        return None
    from berth.store.redis import RedisWakeBus

    return RedisWakeBus.from_url(settings.redis_url)


def open_log_fanout(settings: Settings) -> LogFanout | None:
    """The bus that carries live logs between server replicas; None for a single process."""
    if not settings.redis_url:
        return None
    from berth.store.redis import RedisLogFanout

    return RedisLogFanout.from_url(settings.redis_url)


async def open_blobs(settings: Settings) -> BlobStore:
    """The local blob directory by default; an S3-compatible bucket when BERTH_BLOBS_URL names one."""
    if settings.blob_url:
        from berth.store.s3.blobs import S3BlobStore
        from berth.store.s3.location import S3Location

        return await S3BlobStore.open(S3Location.parse(settings.blob_url), settings.blob_cache_dir)
    from berth.store.local_blobs import LocalBlobStore

    return LocalBlobStore(settings.blob_dir)
