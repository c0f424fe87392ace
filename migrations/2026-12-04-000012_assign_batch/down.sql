DROP FUNCTION IF EXISTS assign_bookings;
