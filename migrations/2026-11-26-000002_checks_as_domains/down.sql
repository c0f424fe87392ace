ALTER TABLE booking_events
    ALTER COLUMN from_status TYPE TEXT,
    ALTER COLUMN to_status TYPE TEXT,
    ADD CONSTRAINT booking_events_from_status_check
        CHECK (from_status IN ('pending', 'assigned', 'accepted', 'completed', 'cancelled')),
    ADD CONSTRAINT booking_events_to_status_check
        CHECK (to_status IN ('pending', 'assigned', 'accepted', 'completed', 'cancelled'));

ALTER TABLE bookings
    ALTER COLUMN pickup_lat TYPE DOUBLE PRECISION,
    ALTER COLUMN pickup_lng TYPE DOUBLE PRECISION,
    ALTER COLUMN dropoff_lat TYPE DOUBLE PRECISION,
    ALTER COLUMN dropoff_lng TYPE DOUBLE PRECISION,
    ALTER COLUMN estimated_fare TYPE NUMERIC(10, 2),
    ALTER COLUMN actual_fare TYPE NUMERIC(10, 2),
    ALTER COLUMN vehicle_type TYPE TEXT,
    ALTER COLUMN status TYPE TEXT,
    ALTER COLUMN fencing_token TYPE BIGINT,
    ADD CONSTRAINT bookings_pickup_lat_check CHECK (pickup_lat BETWEEN -90 AND 90),
    ADD CONSTRAINT bookings_pickup_lng_check CHECK (pickup_lng BETWEEN -180 AND 180),
    ADD CONSTRAINT bookings_dropoff_lat_check CHECK (dropoff_lat BETWEEN -90 AND 90),
    ADD CONSTRAINT bookings_dropoff_lng_check CHECK (dropoff_lng BETWEEN -180 AND 180),
    ADD CONSTRAINT bookings_estimated_fare_check CHECK (estimated_fare > 0),
    ADD CONSTRAINT bookings_actual_fare_check CHECK (actual_fare > 0),
    ADD CONSTRAINT bookings_vehicle_type_check
        CHECK (vehicle_type IS NULL OR length(vehicle_type) BETWEEN 1 AND 32),
    ADD CONSTRAINT bookings_status_check
        CHECK (status IN ('pending', 'assigned', 'accepted', 'completed', 'cancelled')),
    ADD CONSTRAINT bookings_fencing_token_check CHECK (fencing_token >= 0);

ALTER TABLE drivers
    ALTER COLUMN name TYPE TEXT,
    ALTER COLUMN phone TYPE TEXT,
    ALTER COLUMN email TYPE TEXT,
    ALTER COLUMN lat TYPE DOUBLE PRECISION,
    ALTER COLUMN lng TYPE DOUBLE PRECISION,
    ALTER COLUMN status TYPE TEXT,
    ALTER COLUMN vehicle_type TYPE TEXT,
    ALTER COLUMN rating TYPE NUMERIC(3, 2),
    ADD CONSTRAINT drivers_name_check CHECK (length(name) BETWEEN 1 AND 200),
    ADD CONSTRAINT drivers_phone_check CHECK (length(phone) BETWEEN 3 AND 32),
    ADD CONSTRAINT drivers_email_check CHECK (email IS NULL OR length(email) BETWEEN 3 AND 320),
    ADD CONSTRAINT drivers_lat_check CHECK (lat BETWEEN -90 AND 90),
    ADD CONSTRAINT drivers_lng_check CHECK (lng BETWEEN -180 AND 180),
    ADD CONSTRAINT drivers_status_check CHECK (status IN ('online', 'offline', 'busy')),
    ADD CONSTRAINT drivers_vehicle_type_check CHECK (length(vehicle_type) BETWEEN 1 AND 32),
    ADD CONSTRAINT drivers_rating_check CHECK (rating BETWEEN 0 AND 5);

ALTER TABLE riders
    ALTER COLUMN name TYPE TEXT,
    ALTER COLUMN phone TYPE TEXT,
    ALTER COLUMN email TYPE TEXT,
    ADD CONSTRAINT riders_name_check CHECK (length(name) BETWEEN 1 AND 200),
    ADD CONSTRAINT riders_phone_check CHECK (length(phone) BETWEEN 3 AND 32),
    ADD CONSTRAINT riders_email_check CHECK (email IS NULL OR length(email) BETWEEN 3 AND 320);

DROP DOMAIN booking_status;
DROP DOMAIN driver_status;
DROP DOMAIN fencing_token;
DROP DOMAIN driver_rating;
DROP DOMAIN fare;
DROP DOMAIN longitude;
DROP DOMAIN latitude;
DROP DOMAIN vehicle_class;
DROP DOMAIN email_address;
DROP DOMAIN phone_number;
DROP DOMAIN person_name;
