ALTER TABLE booking_events DROP COLUMN actor;
