-- Single-column rules move from table CHECK constraints to domains; the rules are unchanged.
--
-- Why: PostgreSQL 15 re-reads every CHECK constraint of a table from its stored text and plans it
-- again on each row INSERT or UPDATE (ExecConstraints), whatever columns changed. Under the
-- lifecycle load that was about a fifth of PostgreSQL's CPU (see BENCHMARKS.md). A domain's
-- constraints are compiled once per connection, in the type cache, and are checked only when a
-- value is assigned to a column of that domain. The rules that tie columns together stay table
-- CHECKs: they are few and short.

CREATE DOMAIN person_name AS TEXT CHECK (length(VALUE) BETWEEN 1 AND 200);
CREATE DOMAIN phone_number AS TEXT CHECK (length(VALUE) BETWEEN 3 AND 32);
CREATE DOMAIN email_address AS TEXT CHECK (length(VALUE) BETWEEN 3 AND 320);
CREATE DOMAIN vehicle_class AS TEXT CHECK (length(VALUE) BETWEEN 1 AND 32);
CREATE DOMAIN latitude AS DOUBLE PRECISION CHECK (VALUE BETWEEN -90 AND 90);
CREATE DOMAIN longitude AS DOUBLE PRECISION CHECK (VALUE BETWEEN -180 AND 180);
CREATE DOMAIN fare AS NUMERIC(10, 2) CHECK (VALUE > 0);
CREATE DOMAIN driver_rating AS NUMERIC(3, 2) CHECK (VALUE BETWEEN 0 AND 5);
CREATE DOMAIN fencing_token AS BIGINT CHECK (VALUE >= 0);
CREATE DOMAIN driver_status AS TEXT CHECK (VALUE IN ('online', 'offline', 'busy'));
CREATE DOMAIN booking_status AS TEXT
    CHECK (VALUE IN ('pending', 'assigned', 'accepted', 'completed', 'cancelled'));

ALTER TABLE riders
    DROP CONSTRAINT riders_name_check,
    DROP CONSTRAINT riders_phone_check,
    DROP CONSTRAINT riders_email_check,
    ALTER COLUMN name TYPE person_name,
    ALTER COLUMN phone TYPE phone_number,
    ALTER COLUMN email TYPE email_address;

ALTER TABLE drivers
    DROP CONSTRAINT drivers_name_check,
    DROP CONSTRAINT drivers_phone_check,
    DROP CONSTRAINT drivers_email_check,
    DROP CONSTRAINT drivers_lat_check,
    DROP CONSTRAINT drivers_lng_check,
    DROP CONSTRAINT drivers_status_check,
    DROP CONSTRAINT drivers_vehicle_type_check,
    DROP CONSTRAINT drivers_rating_check,
    ALTER COLUMN name TYPE person_name,
    ALTER COLUMN phone TYPE phone_number,
    ALTER COLUMN email TYPE email_address,
    ALTER COLUMN lat TYPE latitude,
    ALTER COLUMN lng TYPE longitude,
    ALTER COLUMN status TYPE driver_status,
    ALTER COLUMN vehicle_type TYPE vehicle_class,
    ALTER COLUMN rating TYPE driver_rating;

ALTER TABLE bookings
    DROP CONSTRAINT bookings_pickup_lat_check,
    DROP CONSTRAINT bookings_pickup_lng_check,
    DROP CONSTRAINT bookings_dropoff_lat_check,
    DROP CONSTRAINT bookings_dropoff_lng_check,
    DROP CONSTRAINT bookings_estimated_fare_check,
    DROP CONSTRAINT bookings_actual_fare_check,
    DROP CONSTRAINT bookings_vehicle_type_check,
    DROP CONSTRAINT bookings_status_check,
    DROP CONSTRAINT bookings_fencing_token_check,
    ALTER COLUMN pickup_lat TYPE latitude,
    ALTER COLUMN pickup_lng TYPE longitude,
    ALTER COLUMN dropoff_lat TYPE latitude,
    ALTER COLUMN dropoff_lng TYPE longitude,
    ALTER COLUMN estimated_fare TYPE fare,
    ALTER COLUMN actual_fare TYPE fare,
    ALTER COLUMN vehicle_type TYPE vehicle_class,
    ALTER COLUMN status TYPE booking_status,
    ALTER COLUMN fencing_token TYPE fencing_token;

ALTER TABLE booking_events
    DROP CONSTRAINT booking_events_from_status_check,
    DROP CONSTRAINT booking_events_to_status_check,
    ALTER COLUMN from_status TYPE booking_status,
    ALTER COLUMN to_status TYPE booking_status;
