"""Opens the stores a server uses, one object per port, from the settings. The embedded default puts
every aggregate in one SQLite file; the scale-out backends plug in here and nowhere else."""

from __future__ import annotations

from dataclasses import dataclass

from berth.config import Settings
from berth.store.ports import BlobStore, CoreStore, HistoryStore, StateStore, WebStore


@dataclass
class Stores:
    core: CoreStore
    history: HistoryStore
    state: StateStore
    web: WebStore

    async def close(self) -> None:
        await self.core.close()


async def open_stores(settings: Settings) -> Stores:
    from berth.store.sqlite import SqliteStore
    from berth.store.sqlite.deployments import DeploymentStore as SqliteDeployments
    from berth.store.sqlite.state import SqliteStateStore
    from berth.store.sqlite.web import WebStore as SqliteWeb

    core = await SqliteStore.open(settings.db_path)
    return Stores(
        core, SqliteDeployments(core.connection), SqliteStateStore(core.connection), SqliteWeb(core.connection)
    )


async def open_blobs(settings: Settings) -> BlobStore:
    """The local blob directory by default; an S3-compatible bucket when BERTH_BLOBS_URL names one."""
    if settings.blob_url:
        from berth.store.s3.blobs import S3BlobStore
        from berth.store.s3.location import S3Location

        return await S3BlobStore.open(S3Location.parse(settings.blob_url), settings.blob_cache_dir)
    from berth.store.local_blobs import LocalBlobStore

    return LocalBlobStore(settings.blob_dir)
