-- A rider's active bookings (booking.max_active_per_rider counts them at every creation): found
-- from this small index alone, however long the rider's history. Built CONCURRENTLY (outside a
-- transaction, see metadata.toml): bookings may be large, and nodes of the previous build keep
-- writing to it meanwhile.
CREATE INDEX CONCURRENTLY IF NOT EXISTS bookings_rider_active_idx
    ON bookings (rider_id) WHERE status IN ('pending', 'assigned', 'accepted');
