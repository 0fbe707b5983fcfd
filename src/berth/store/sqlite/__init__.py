"""SQLite adapter: the embedded default store."""

from berth.store.sqlite.store import SqliteStore

__all__ = ["SqliteStore"]
