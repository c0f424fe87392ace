DELETE FROM idempotency_keys a USING idempotency_keys b
 WHERE a.key = b.key AND a.scope > b.scope;
ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_pkey;
ALTER TABLE idempotency_keys ADD PRIMARY KEY (key);
ALTER TABLE idempotency_keys DROP COLUMN scope;
