-- Autoscaler settings changed at run time (Function.update_autoscaler, `modal function autoscaler update`):
-- one AutoscalerConfiguration per function holding the override settings and who set each one. They
-- outlive a server restart; a redeploy of the function removes its row (Modal resets overrides on deploy).
CREATE TABLE autoscaler_overrides (
    function_id TEXT PRIMARY KEY,
    configuration BLOB NOT NULL,
    updated_at REAL NOT NULL
);
