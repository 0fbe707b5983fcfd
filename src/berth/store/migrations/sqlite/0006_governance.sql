-- Governance: metered usage (per task and minute bucket: the integrals of CPU core-seconds, memory
-- GiB-seconds and GPU-seconds), the rates usage is priced at, app tags, the audit log and quotas.
CREATE TABLE IF NOT EXISTS usage_minutes (
    task_id TEXT NOT NULL,
    bucket INTEGER NOT NULL,
    object_id TEXT NOT NULL,
    app_id TEXT NOT NULL,
    function_id TEXT NOT NULL,
    environment TEXT NOT NULL,
    description TEXT NOT NULL,
    tags TEXT NOT NULL,
    gpu_type TEXT NOT NULL,
    cpu_s REAL NOT NULL,
    memory_gib_s REAL NOT NULL,
    gpu_s REAL NOT NULL,
    PRIMARY KEY (task_id, bucket)
);
CREATE INDEX IF NOT EXISTS usage_minutes_bucket ON usage_minutes(bucket);
CREATE TABLE IF NOT EXISTS billing_rates (
    resource TEXT PRIMARY KEY,
    rate TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS app_tags (
    app_id TEXT PRIMARY KEY,
    tags TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    entry_id TEXT NOT NULL UNIQUE,
    at REAL NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target_type TEXT NOT NULL,
    target_id TEXT NOT NULL,
    environment TEXT NOT NULL,
    status TEXT NOT NULL,
    details TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_log_at ON audit_log(at);
CREATE TABLE IF NOT EXISTS quotas (
    scope TEXT NOT NULL,
    resource TEXT NOT NULL,
    quota INTEGER NOT NULL,
    PRIMARY KEY (scope, resource)
);
