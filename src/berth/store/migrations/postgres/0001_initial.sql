-- The PostgreSQL schema, table for table the SQLite one (migrations/sqlite/0001_initial.sql): REAL is
-- DOUBLE PRECISION (unix seconds), BLOB is BYTEA, 0/1 flags are BOOLEAN, AUTOINCREMENT is an identity.

-- core: tokens, apps, functions, objects, calls, inputs, outputs, tasks
CREATE TABLE tokens (
    token_id TEXT PRIMARY KEY,
    secret_hash TEXT NOT NULL,
    environment TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    revoked_at DOUBLE PRECISION
);
CREATE TABLE apps (
    app_id TEXT PRIMARY KEY,
    name TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '',
    state INTEGER NOT NULL,
    environment TEXT NOT NULL DEFAULT 'main',
    created_at DOUBLE PRECISION NOT NULL,
    stopped_at DOUBLE PRECISION
);
CREATE INDEX apps_name ON apps(environment, name);
CREATE TABLE deployments (
    app_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    deployed_at DOUBLE PRECISION NOT NULL,
    tag TEXT NOT NULL DEFAULT '',
    client_version TEXT NOT NULL DEFAULT '',
    rollback_version INTEGER NOT NULL DEFAULT 0,
    commit_info BYTEA NOT NULL DEFAULT ''::bytea,
    snapshot BYTEA NOT NULL,
    PRIMARY KEY (app_id, version)
);
CREATE TABLE environments (
    name TEXT PRIMARY KEY,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE logs (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    app_id TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    batch BYTEA NOT NULL
);
CREATE INDEX logs_app ON logs(app_id, created_at);
CREATE INDEX logs_created ON logs(created_at);
CREATE TABLE functions (
    function_id TEXT PRIMARY KEY,
    app_id TEXT NOT NULL,
    tag TEXT NOT NULL,
    definition BYTEA NOT NULL,
    bound_from TEXT,
    serialized_params BYTEA NOT NULL DEFAULT ''::bytea,
    options BYTEA NOT NULL DEFAULT ''::bytea
);
CREATE INDEX functions_app ON functions(app_id);
CREATE INDEX functions_bound ON functions(bound_from) WHERE bound_from IS NOT NULL;
CREATE TABLE classes (
    class_id TEXT PRIMARY KEY,
    app_id TEXT NOT NULL,
    tag TEXT NOT NULL DEFAULT '',
    metadata BYTEA NOT NULL
);
CREATE TABLE objects (
    object_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    name TEXT,
    namespace INTEGER NOT NULL DEFAULT 0,
    environment TEXT NOT NULL DEFAULT '',
    app_id TEXT,
    key TEXT,
    body BYTEA NOT NULL DEFAULT ''::bytea,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE UNIQUE INDEX objects_key ON objects(kind, key) WHERE key IS NOT NULL;
CREATE TABLE calls (
    call_id TEXT PRIMARY KEY,
    function_id TEXT NOT NULL,
    call_type INTEGER NOT NULL,
    invocation_type INTEGER NOT NULL,
    return_exceptions BOOLEAN NOT NULL DEFAULT FALSE,
    num_inputs INTEGER NOT NULL DEFAULT 0,
    inputs_finished BOOLEAN NOT NULL DEFAULT FALSE,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX calls_created ON calls(created_at);
CREATE TABLE inputs (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    input_id TEXT NOT NULL UNIQUE,
    call_id TEXT NOT NULL,
    function_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    method_name TEXT NOT NULL DEFAULT '',
    payload BYTEA NOT NULL,
    state TEXT NOT NULL,
    holder TEXT,
    deadline DOUBLE PRECISION,
    attempt INTEGER NOT NULL DEFAULT 0,
    not_before DOUBLE PRECISION NOT NULL DEFAULT 0,
    created_at DOUBLE PRECISION NOT NULL
);
-- Claims scan only queued rows of one function in seq order.
CREATE INDEX inputs_queue ON inputs(function_id, seq) WHERE state = 'queued';
CREATE INDEX inputs_call ON inputs(call_id, state);
CREATE INDEX inputs_holder ON inputs(holder) WHERE holder IS NOT NULL;
CREATE INDEX inputs_deadline ON inputs(deadline) WHERE state = 'leased';
CREATE TABLE outputs (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    call_id TEXT NOT NULL,
    input_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    result BYTEA NOT NULL,
    data_format INTEGER NOT NULL,
    retry_count INTEGER NOT NULL DEFAULT 0,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX outputs_call ON outputs(call_id, seq);
CREATE TABLE data_chunks (
    call_id TEXT NOT NULL,
    direction TEXT NOT NULL,
    idx INTEGER NOT NULL,
    chunk BYTEA NOT NULL,
    PRIMARY KEY (call_id, direction, idx)
);
CREATE TABLE tasks (
    task_id TEXT PRIMARY KEY,
    function_id TEXT NOT NULL,
    app_id TEXT NOT NULL,
    state TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    ended_at DOUBLE PRECISION,
    result BYTEA
);
CREATE INDEX tasks_open ON tasks(task_id) WHERE ended_at IS NULL;

-- state objects and the contents of dicts and queues
CREATE TABLE state_objects (
    object_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    name TEXT,
    environment TEXT NOT NULL,
    ephemeral BOOLEAN NOT NULL DEFAULT FALSE,
    app_id TEXT,
    version INTEGER NOT NULL DEFAULT 0,
    body BYTEA,
    created_at DOUBLE PRECISION NOT NULL,
    heartbeat_at DOUBLE PRECISION NOT NULL
);
CREATE UNIQUE INDEX state_objects_name ON state_objects(kind, environment, name) WHERE name IS NOT NULL;
CREATE INDEX state_objects_ephemeral ON state_objects(kind, heartbeat_at) WHERE ephemeral;
-- seq keeps SQLite's iteration order: a rewritten key moves to the end (INSERT OR REPLACE gives a new rowid).
CREATE TABLE dict_entries (
    dict_id TEXT NOT NULL,
    key BYTEA NOT NULL,
    value BYTEA NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    seq BIGSERIAL NOT NULL,
    PRIMARY KEY (dict_id, key)
);
CREATE INDEX dict_entries_order ON dict_entries(dict_id, seq);
CREATE TABLE queue_items (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue_id TEXT NOT NULL,
    partition BYTEA NOT NULL,
    value BYTEA NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX queue_items_partition ON queue_items(queue_id, partition, seq);
CREATE TABLE queue_partitions (
    queue_id TEXT NOT NULL,
    partition BYTEA NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (queue_id, partition)
);

-- web endpoints, proxy-auth tokens, schedules and their ticks
CREATE TABLE web_endpoints (
    key TEXT PRIMARY KEY,
    port INTEGER NOT NULL UNIQUE,
    app_id TEXT NOT NULL,
    function_id TEXT NOT NULL,
    method_name TEXT NOT NULL DEFAULT '',
    requires_auth BOOLEAN NOT NULL DEFAULT FALSE,
    updated_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE web_tokens (
    token_id TEXT PRIMARY KEY,
    secret_hash TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    revoked_at DOUBLE PRECISION
);
CREATE TABLE schedules (
    function_id TEXT PRIMARY KEY,
    app_id TEXT NOT NULL,
    spec BYTEA NOT NULL,
    anchor DOUBLE PRECISION NOT NULL,
    next_tick DOUBLE PRECISION NOT NULL
);
CREATE TABLE schedule_ticks (
    function_id TEXT NOT NULL,
    tick_at DOUBLE PRECISION NOT NULL,
    call_id TEXT NOT NULL,
    input_id TEXT NOT NULL,
    state TEXT NOT NULL,
    PRIMARY KEY (function_id, tick_at)
);
