DROP TRIGGER booking_events_announce ON booking_events;
DROP FUNCTION ridelock_announce_events();
