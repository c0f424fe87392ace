-- Riders, drivers, bookings and the append-only booking audit trail.
-- PostgreSQL is the system of record: every invariant a client relies on is also a constraint here.

CREATE TABLE riders (
    id          BIGSERIAL PRIMARY KEY,
    name        TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    phone       TEXT NOT NULL UNIQUE CHECK (length(phone) BETWEEN 3 AND 32),
    email       TEXT CHECK (email IS NULL OR length(email) BETWEEN 3 AND 320),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE drivers (
    id                  BIGSERIAL PRIMARY KEY,
    name                TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    phone               TEXT NOT NULL UNIQUE CHECK (length(phone) BETWEEN 3 AND 32),
    email               TEXT CHECK (email IS NULL OR length(email) BETWEEN 3 AND 320),
    lat                 DOUBLE PRECISION CHECK (lat BETWEEN -90 AND 90),
    lng                 DOUBLE PRECISION CHECK (lng BETWEEN -180 AND 180),
    status              TEXT NOT NULL DEFAULT 'offline' CHECK (status IN ('online', 'offline', 'busy')),
    vehicle_type        TEXT NOT NULL DEFAULT 'standard' CHECK (length(vehicle_type) BETWEEN 1 AND 32),
    rating              NUMERIC(3, 2) NOT NULL DEFAULT 5.00 CHECK (rating BETWEEN 0 AND 5),
    current_booking_id  BIGINT,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- A driver is busy exactly when it holds a booking; an online driver must be locatable.
    CHECK ((status = 'busy') = (current_booking_id IS NOT NULL)),
    CHECK (status <> 'online' OR (lat IS NOT NULL AND lng IS NOT NULL))
);

-- SQL fallback for the nearby search when the Redis geo index is unavailable.
CREATE INDEX drivers_online_location_idx ON drivers (lat, lng) WHERE status = 'online';

CREATE TABLE bookings (
    id                   BIGSERIAL PRIMARY KEY,
    rider_id             BIGINT NOT NULL REFERENCES riders (id),
    driver_id            BIGINT REFERENCES drivers (id),
    pickup_lat           DOUBLE PRECISION NOT NULL CHECK (pickup_lat BETWEEN -90 AND 90),
    pickup_lng           DOUBLE PRECISION NOT NULL CHECK (pickup_lng BETWEEN -180 AND 180),
    dropoff_lat          DOUBLE PRECISION NOT NULL CHECK (dropoff_lat BETWEEN -90 AND 90),
    dropoff_lng          DOUBLE PRECISION NOT NULL CHECK (dropoff_lng BETWEEN -180 AND 180),
    estimated_fare       NUMERIC(10, 2) NOT NULL CHECK (estimated_fare > 0),
    actual_fare          NUMERIC(10, 2) CHECK (actual_fare > 0),
    vehicle_type         TEXT CHECK (vehicle_type IS NULL OR length(vehicle_type) BETWEEN 1 AND 32),
    status               TEXT NOT NULL DEFAULT 'pending'
                         CHECK (status IN ('pending', 'assigned', 'accepted', 'completed', 'cancelled')),
    cancellation_reason  TEXT,
    -- Bumped by every activation of the booking's actor; every write is conditional on it.
    fencing_token        BIGINT NOT NULL DEFAULT 0 CHECK (fencing_token >= 0),
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    assigned_at          TIMESTAMPTZ,
    accepted_at          TIMESTAMPTZ,
    cancelled_at         TIMESTAMPTZ,
    completed_at         TIMESTAMPTZ,
    updated_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (status = 'pending' OR status = 'cancelled' OR driver_id IS NOT NULL),
    CHECK (status <> 'completed' OR actual_fare IS NOT NULL)
);

ALTER TABLE drivers
    ADD CONSTRAINT drivers_current_booking_fk FOREIGN KEY (current_booking_id) REFERENCES bookings (id);

-- The database-level guarantee that no driver is ever booked twice.
CREATE UNIQUE INDEX bookings_one_active_per_driver
    ON bookings (driver_id) WHERE status IN ('assigned', 'accepted');

-- Per-user listings, newest first.
CREATE INDEX bookings_rider_idx ON bookings (rider_id, id DESC);
CREATE INDEX bookings_driver_idx ON bookings (driver_id, id DESC) WHERE driver_id IS NOT NULL;

CREATE TABLE booking_events (
    id             BIGSERIAL PRIMARY KEY,
    booking_id     BIGINT NOT NULL REFERENCES bookings (id),
    from_status    TEXT CHECK (from_status IN ('pending', 'assigned', 'accepted', 'completed', 'cancelled')),
    to_status      TEXT NOT NULL CHECK (to_status IN ('pending', 'assigned', 'accepted', 'completed', 'cancelled')),
    driver_id      BIGINT REFERENCES drivers (id),
    node_id        TEXT NOT NULL,
    fencing_token  BIGINT NOT NULL,
    request_id     TEXT NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX booking_events_booking_idx ON booking_events (booking_id, id);

-- The audit trail is append-only.
CREATE FUNCTION booking_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'booking_events is append-only';
END;
$$;

CREATE TRIGGER booking_events_no_update
    BEFORE UPDATE OR DELETE ON booking_events
    FOR EACH ROW EXECUTE FUNCTION booking_events_append_only();
