DROP INDEX CONCURRENTLY IF EXISTS bookings_rider_active_idx;
