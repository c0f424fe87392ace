DROP INDEX CONCURRENTLY IF EXISTS idempotency_keys_created_at;
