"""PostgreSQL adapter: the shared control-plane store of a scaled-out Berth (several server replicas on
one database). Every store shares one asyncpg pool (db.Database)."""

from __future__ import annotations

from berth.store.postgres.core import PostgresCoreStore
from berth.store.postgres.db import Database
from berth.store.postgres.governance import PostgresGovernanceStore
from berth.store.postgres.history import PostgresHistoryStore
from berth.store.postgres.state import PostgresStateStore
from berth.store.postgres.web import PostgresWebStore

__all__ = [
    "Database",
    "PostgresCoreStore",
    "PostgresGovernanceStore",
    "PostgresHistoryStore",
    "PostgresStateStore",
    "PostgresWebStore",
]
