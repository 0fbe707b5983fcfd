-- Several server replicas on one database: each replica beats in `replicas`; a task records the replica that
-- started it, so the leases of a dead replica's tasks go back to the queue. Apps keep their client's last
-- heartbeat here, so any replica can tell a silent client.
CREATE TABLE replicas (
    replica_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    started_at REAL NOT NULL,
    seen_at REAL NOT NULL,
    info BLOB NOT NULL DEFAULT x''
);
CREATE INDEX replicas_name ON replicas(name);
ALTER TABLE tasks ADD COLUMN replica_id TEXT NOT NULL DEFAULT '';
ALTER TABLE apps ADD COLUMN heartbeat_at REAL;
-- A cancellation asked of a running input, for the container that holds it now (`cancel_for`), which may be
-- served by another replica: that replica takes it at the container's next heartbeat. 1 cancels the input,
-- 2 terminates the container.
ALTER TABLE inputs ADD COLUMN cancel_for TEXT;
ALTER TABLE inputs ADD COLUMN cancel_kind INTEGER NOT NULL DEFAULT 0;
-- FunctionGetOutputs with start_idx/end_idx (FunctionCall.get(index=), .iter()) reads outputs by input index.
CREATE INDEX outputs_by_idx ON outputs(call_id, idx);
