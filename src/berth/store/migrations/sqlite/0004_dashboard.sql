-- Dashboard sign-ins: one-time links (`berth dashboard-link`) and browser sessions, each stored as a
-- digest of its secret and tied to the client token it acts as, so revoking the token ends them.
CREATE TABLE dashboard_grants (
    digest TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    token_id TEXT NOT NULL,
    expires_at REAL NOT NULL,
    used_at REAL
);
-- Why a container ended ('stopped by request', 'exited with code 1', an init failure...), for the dashboard.
ALTER TABLE tasks ADD COLUMN exit_reason TEXT NOT NULL DEFAULT '';
