-- Idempotency keys are kept for `idempotency.retention_secs` (24 h by default), then purged in
-- small batches by every node, oldest first: this index finds the expired ones without a scan.
-- Built CONCURRENTLY (outside a transaction, see metadata.toml): the table may be large after
-- keys were kept forever, and nodes of the previous build keep writing to it meanwhile.
CREATE INDEX CONCURRENTLY IF NOT EXISTS idempotency_keys_created_at ON idempotency_keys (created_at);
