"""Opens the stores a server uses, one object per port, from the settings. The embedded default puts
every aggregate in one SQLite file; the scale-out backends plug in here and nowhere else."""

from __future__ import annotations

from berth.config import Settings
from berth.store.ports import Stores


async def open_stores(settings: Settings) -> Stores:
    from berth.store.sqlite import SqliteStore
    from berth.store.sqlite.deployments import DeploymentStore as SqliteDeployments
    from berth.store.sqlite.state import SqliteStateStore
    from berth.store.sqlite.web import WebStore as SqliteWeb

    core = await SqliteStore.open(settings.db_path)
    return Stores(
        core, SqliteDeployments(core.connection), SqliteStateStore(core.connection), SqliteWeb(core.connection)
    )
