-- Staged deployments (`modal deploy --staged`, `modal app promote`): each version records how it came to be,
-- as api_pb2.DeploymentType (1 standard, 2 rollback, 3 rollover, 4 promotion, 5 staged). Rows written before
-- this migration are standard deploys unless they refer back to a version: a rollover refers to the version
-- just before it, a rollback to an older one (a rollback to the then-live version reads as a rollover: the
-- two did the same thing).
ALTER TABLE deployments ADD COLUMN deployment_type INTEGER NOT NULL DEFAULT 1;
UPDATE deployments SET deployment_type = 3 WHERE rollback_version > 0 AND rollback_version = version - 1;
UPDATE deployments SET deployment_type = 2 WHERE rollback_version > 0 AND rollback_version < version - 1;
