-- Offers standing (bookings assigned, not yet accepted), oldest first: every node's offer sweep
-- finds the ones past `offer.timeout_ms` from this small index alone. Built CONCURRENTLY (outside
-- a transaction, see metadata.toml), as bookings may be large and in use.
CREATE INDEX CONCURRENTLY IF NOT EXISTS bookings_standing_offers_idx
    ON bookings (assigned_at) WHERE status = 'assigned';
