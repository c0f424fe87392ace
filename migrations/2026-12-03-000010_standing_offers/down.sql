DROP INDEX CONCURRENTLY IF EXISTS bookings_standing_offers_idx;
