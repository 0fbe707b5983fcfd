-- The schema as the embedded store created it before versioned migrations. Every statement says
-- IF NOT EXISTS, so a data dir made by that code (tables present, no schema_migrations) takes this
-- migration as a no-op and is recorded at version 1.
-- core: tokens, apps, functions, objects, calls, inputs, outputs, tasks
CREATE TABLE IF NOT EXISTS tokens (
    token_id TEXT PRIMARY KEY,
    secret_hash TEXT NOT NULL,
    environment TEXT,
    created_at REAL NOT NULL,
    revoked_at REAL
);
CREATE TABLE IF NOT EXISTS apps (
    app_id TEXT PRIMARY KEY,
    name TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '',
    state INTEGER NOT NULL,
    environment TEXT NOT NULL DEFAULT 'main',
    created_at REAL NOT NULL,
    stopped_at REAL
);
CREATE INDEX IF NOT EXISTS apps_name ON apps(environment, name);
CREATE TABLE IF NOT EXISTS deployments (
    app_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    deployed_at REAL NOT NULL,
    tag TEXT NOT NULL DEFAULT '',
    client_version TEXT NOT NULL DEFAULT '',
    rollback_version INTEGER NOT NULL DEFAULT 0,
    commit_info BLOB NOT NULL DEFAULT x'',
    snapshot BLOB NOT NULL,
    PRIMARY KEY (app_id, version)
);
CREATE TABLE IF NOT EXISTS environments (
    name TEXT PRIMARY KEY,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS logs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id TEXT NOT NULL,
    created_at REAL NOT NULL,
    batch BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS logs_app ON logs(app_id, created_at);
CREATE TABLE IF NOT EXISTS functions (
    function_id TEXT PRIMARY KEY,
    app_id TEXT NOT NULL,
    tag TEXT NOT NULL,
    definition BLOB NOT NULL,
    bound_from TEXT,
    serialized_params BLOB NOT NULL DEFAULT x'',
    options BLOB NOT NULL DEFAULT x''
);
CREATE INDEX IF NOT EXISTS functions_app ON functions(app_id);
CREATE TABLE IF NOT EXISTS classes (
    class_id TEXT PRIMARY KEY,
    app_id TEXT NOT NULL,
    tag TEXT NOT NULL DEFAULT '',
    metadata BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS objects (
    object_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    name TEXT,
    namespace INTEGER NOT NULL DEFAULT 0,
    environment TEXT NOT NULL DEFAULT '',
    app_id TEXT,
    key TEXT,
    body BLOB NOT NULL DEFAULT x'',
    created_at REAL NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS objects_key ON objects(kind, key) WHERE key IS NOT NULL;
CREATE TABLE IF NOT EXISTS calls (
    call_id TEXT PRIMARY KEY,
    function_id TEXT NOT NULL,
    call_type INTEGER NOT NULL,
    invocation_type INTEGER NOT NULL,
    return_exceptions INTEGER NOT NULL DEFAULT 0,
    num_inputs INTEGER NOT NULL DEFAULT 0,
    inputs_finished INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS inputs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    input_id TEXT NOT NULL UNIQUE,
    call_id TEXT NOT NULL,
    function_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    method_name TEXT NOT NULL DEFAULT '',
    payload BLOB NOT NULL,
    state TEXT NOT NULL,
    holder TEXT,
    deadline REAL,
    attempt INTEGER NOT NULL DEFAULT 0,
    not_before REAL NOT NULL DEFAULT 0,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS inputs_queue ON inputs(function_id, state, seq);
CREATE INDEX IF NOT EXISTS inputs_call ON inputs(call_id, state);
CREATE INDEX IF NOT EXISTS inputs_holder ON inputs(holder) WHERE holder IS NOT NULL;
CREATE INDEX IF NOT EXISTS inputs_deadline ON inputs(deadline) WHERE state='leased';
CREATE TABLE IF NOT EXISTS outputs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id TEXT NOT NULL,
    input_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    result BLOB NOT NULL,
    data_format INTEGER NOT NULL,
    retry_count INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS outputs_call ON outputs(call_id, seq);
CREATE TABLE IF NOT EXISTS data_chunks (
    call_id TEXT NOT NULL,
    direction TEXT NOT NULL,
    idx INTEGER NOT NULL,
    chunk BLOB NOT NULL,
    PRIMARY KEY (call_id, direction, idx)
);
CREATE TABLE IF NOT EXISTS tasks (
    task_id TEXT PRIMARY KEY,
    function_id TEXT NOT NULL,
    app_id TEXT NOT NULL,
    state TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    created_at REAL NOT NULL,
    ended_at REAL,
    result BLOB
);

-- state objects and the contents of dicts and queues
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

-- web endpoints, proxy-auth tokens, schedules and their ticks
CREATE TABLE IF NOT EXISTS web_endpoints (
    key TEXT PRIMARY KEY,
    port INTEGER NOT NULL UNIQUE,
    app_id TEXT NOT NULL,
    function_id TEXT NOT NULL,
    method_name TEXT NOT NULL DEFAULT '',
    requires_auth INTEGER NOT NULL DEFAULT 0,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS web_tokens (
    token_id TEXT PRIMARY KEY,
    secret_hash TEXT NOT NULL,
    created_at REAL NOT NULL,
    revoked_at REAL
);
CREATE TABLE IF NOT EXISTS schedules (
    function_id TEXT PRIMARY KEY,
    app_id TEXT NOT NULL,
    spec BLOB NOT NULL,
    anchor REAL NOT NULL,
    next_tick REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS schedule_ticks (
    function_id TEXT NOT NULL,
    tick_at REAL NOT NULL,
    call_id TEXT NOT NULL,
    input_id TEXT NOT NULL,
    state TEXT NOT NULL,
    PRIMARY KEY (function_id, tick_at)
);
