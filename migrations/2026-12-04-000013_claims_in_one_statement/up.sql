-- The group-commit writer now plans a batch's driver claims itself and makes them in one
-- set-based statement (src/storage/writer/batch.rs, CLAIMS_SQL), instead of one statement per
-- booking inside this function's loop: the function has no caller left.
DROP FUNCTION IF EXISTS assign_bookings;
