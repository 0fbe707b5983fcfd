-- Service users (`modal workspace service-users`) are named tokens that may expire; any token may be
-- disabled and enabled again (`modal workspace member-tokens disable|enable`), unlike a revoked one.
ALTER TABLE tokens ADD COLUMN name TEXT;
ALTER TABLE tokens ADD COLUMN disabled_at DOUBLE PRECISION;
ALTER TABLE tokens ADD COLUMN expires_at DOUBLE PRECISION;
CREATE UNIQUE INDEX tokens_live_name ON tokens(name) WHERE name IS NOT NULL AND revoked_at IS NULL;
