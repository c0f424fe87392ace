-- Idempotency keys are kept for `idempotency.retention_secs` (24 h by default), then purged in
-- small batches by every node, oldest first: this index finds the expired ones without a scan.
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
