DROP TRIGGER booking_events_no_update ON booking_events;
DROP FUNCTION booking_events_append_only();
DROP TABLE booking_events;
ALTER TABLE drivers DROP CONSTRAINT drivers_current_booking_fk;
DROP TABLE bookings;
DROP TABLE drivers;
DROP TABLE riders;
