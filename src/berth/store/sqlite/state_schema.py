"""Schema of the state objects apps share: volumes, secrets, dicts and queues. Idempotent, like the core schema."""

STATE_SCHEMA = """
CREATE TABLE IF NOT EXISTS state_objects (
    object_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    name TEXT,
    environment TEXT NOT NULL,
    ephemeral INTEGER NOT NULL DEFAULT 0,
    app_id TEXT,
    version INTEGER NOT NULL DEFAULT 0,
    body BLOB,
    created_at REAL NOT NULL,
    heartbeat_at REAL NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS state_objects_name ON state_objects(kind, environment, name) WHERE name IS NOT NULL;
CREATE INDEX IF NOT EXISTS state_objects_ephemeral ON state_objects(kind, heartbeat_at) WHERE ephemeral = 1;
CREATE TABLE IF NOT EXISTS dict_entries (
    dict_id TEXT NOT NULL,
    key BLOB NOT NULL,
    value BLOB NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (dict_id, key)
);
CREATE TABLE IF NOT EXISTS queue_items (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    queue_id TEXT NOT NULL,
    partition BLOB NOT NULL,
    value BLOB NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS queue_items_partition ON queue_items(queue_id, partition, seq);
CREATE TABLE IF NOT EXISTS queue_partitions (
    queue_id TEXT NOT NULL,
    partition BLOB NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (queue_id, partition)
);
"""
