-- The booking is written with the creating node's fencing token (`p_fencing_token`) instead of 0,
-- so the node's actor can own it from the start without a second commit to bump the token
-- (`actors::registry::BookingRegistry::adopt`). Everything else is as in migration 000009.
CREATE OR REPLACE FUNCTION create_booking_within_limit(
    p_rider_id BIGINT,
    p_max_active BIGINT,
    p_pickup_lat DOUBLE PRECISION,
    p_pickup_lng DOUBLE PRECISION,
    p_dropoff_lat DOUBLE PRECISION,
    p_dropoff_lng DOUBLE PRECISION,
    p_estimated_fare NUMERIC,
    p_vehicle_type TEXT,
    p_node_id TEXT,
    p_fencing_token BIGINT,
    p_request_id TEXT,
    p_actor TEXT
) RETURNS SETOF bookings LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM 1 FROM riders WHERE id = p_rider_id FOR NO KEY UPDATE;
    IF FOUND AND (
        SELECT count(*) FROM bookings
        WHERE rider_id = p_rider_id AND status IN ('pending', 'assigned', 'accepted')
    ) >= p_max_active THEN
        RETURN;
    END IF;
    RETURN QUERY
    WITH b AS (
        INSERT INTO bookings
            (rider_id, pickup_lat, pickup_lng, dropoff_lat, dropoff_lng, estimated_fare, vehicle_type,
             fencing_token)
        VALUES (p_rider_id, p_pickup_lat, p_pickup_lng, p_dropoff_lat, p_dropoff_lng,
                p_estimated_fare, p_vehicle_type, p_fencing_token)
        RETURNING *
    ), e AS (
        INSERT INTO booking_events
            (booking_id, from_status, to_status, driver_id, node_id, fencing_token, request_id, actor)
        SELECT id, NULL, status, driver_id, p_node_id, p_fencing_token, p_request_id, p_actor FROM b
    )
    SELECT * FROM b;
END;
$$;
