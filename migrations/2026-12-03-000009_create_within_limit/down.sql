DROP FUNCTION IF EXISTS create_booking_within_limit;
