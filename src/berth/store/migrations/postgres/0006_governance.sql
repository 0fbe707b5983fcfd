-- Governance: metered usage (per task and minute bucket: the integrals of CPU core-seconds, memory
-- GiB-seconds and GPU-seconds), the rates usage is priced at, app tags, the audit log and quotas.
CREATE TABLE usage_minutes (
    task_id TEXT NOT NULL,
    bucket BIGINT NOT NULL,
    object_id TEXT NOT NULL,
    app_id TEXT NOT NULL,
    function_id TEXT NOT NULL,
    environment TEXT NOT NULL,
    description TEXT NOT NULL,
    tags TEXT NOT NULL,
    gpu_type TEXT NOT NULL,
    cpu_s DOUBLE PRECISION NOT NULL,
    memory_gib_s DOUBLE PRECISION NOT NULL,
    gpu_s DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (task_id, bucket)
);
CREATE INDEX usage_minutes_bucket ON usage_minutes(bucket);
CREATE TABLE billing_rates (
    resource TEXT PRIMARY KEY,
    rate TEXT NOT NULL
);
CREATE TABLE app_tags (
    app_id TEXT PRIMARY KEY,
    tags TEXT NOT NULL
);
CREATE TABLE audit_log (
    seq BIGSERIAL PRIMARY KEY,
    entry_id TEXT NOT NULL UNIQUE,
    at DOUBLE PRECISION NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target_type TEXT NOT NULL,
    target_id TEXT NOT NULL,
    environment TEXT NOT NULL,
    status TEXT NOT NULL,
    details TEXT NOT NULL
);
CREATE INDEX audit_log_at ON audit_log(at);
CREATE TABLE quotas (
    scope TEXT NOT NULL,
    resource TEXT NOT NULL,
    quota BIGINT NOT NULL,
    PRIMARY KEY (scope, resource)
);
