-- Sandboxes across server replicas: each running sandbox has a row here until it ends, so any replica can
-- list an app's sandboxes, find one by name (unique among an app's running sandboxes, whichever replica
-- started them) and ask the replica that runs it to terminate it (`stop_requested_at`).
CREATE TABLE sandboxes (
    sandbox_id TEXT PRIMARY KEY,
    app_id TEXT NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    created_at DOUBLE PRECISION NOT NULL,
    ended_at DOUBLE PRECISION,
    stop_requested_at DOUBLE PRECISION
);
CREATE UNIQUE INDEX sandboxes_running_name ON sandboxes(app_id, name) WHERE name != '' AND ended_at IS NULL;
CREATE INDEX sandboxes_running ON sandboxes(app_id, created_at) WHERE ended_at IS NULL;
