-- Environment roles of tokens (`modal environment roles update ENV TOKEN_ID --service-user --role ...`):
-- 'contributor' (read-write), 'viewer' (read-only) or 'no-access'. A token with no row here has its
-- default: contributor, or no access outside the one environment a scoped token was created for.
CREATE TABLE environment_roles (
    environment TEXT NOT NULL,
    token_id TEXT NOT NULL,
    role TEXT NOT NULL,
    PRIMARY KEY (environment, token_id)
);
