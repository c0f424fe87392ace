-- Every audit event is announced on the channel `ridelock_events` when, and only if, its
-- transaction commits (NOTIFY is transactional), in commit order: each node LISTENs and pushes
-- the events to the apps' streams (src/streams). One statement-level trigger covers every way an
-- event is written; the payload is the event as `GET /api/bookings/{id}/events` shows it, plus
-- the booking's rider, whose stream it also belongs to. Announced in id order.
CREATE FUNCTION ridelock_announce_events() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    announced record;
BEGIN
    FOR announced IN
        SELECT json_build_object(
            'id', e.id,
            'booking_id', e.booking_id,
            'rider_id', b.rider_id,
            'from_status', e.from_status,
            'to_status', e.to_status,
            'driver_id', e.driver_id,
            'node_id', e.node_id,
            'fencing_token', e.fencing_token,
            'request_id', e.request_id,
            'created_at', e.created_at,
            'actor', e.actor
        )::text AS payload
        FROM new_events e JOIN bookings b ON b.id = e.booking_id
        ORDER BY e.id
    LOOP
        PERFORM pg_notify('ridelock_events', announced.payload);
    END LOOP;
    RETURN NULL;
END;
$$;

CREATE TRIGGER booking_events_announce
    AFTER INSERT ON booking_events
    REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT EXECUTE FUNCTION ridelock_announce_events();
