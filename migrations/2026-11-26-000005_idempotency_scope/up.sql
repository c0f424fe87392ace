-- Idempotency keys belong to the caller that sent them (the token's subject, e.g. `rider:12`):
-- two callers choosing the same key never see each other's answers. Keys stored before callers
-- were known keep the empty scope, which no caller has.
ALTER TABLE idempotency_keys ADD COLUMN scope TEXT NOT NULL DEFAULT '' CHECK (length(scope) <= 80);
ALTER TABLE idempotency_keys ALTER COLUMN scope DROP DEFAULT;
ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_pkey;
ALTER TABLE idempotency_keys ADD PRIMARY KEY (scope, key);
