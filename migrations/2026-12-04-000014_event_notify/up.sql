-- Every audit event is announced on the channel `ridelock_events` when, and only if, its
-- transaction commits (NOTIFY is transactional), in commit order: each node LISTENs and pushes
-- the events to the apps' streams (src/streams). One statement-level trigger covers every way an
-- event is written. A payload is a JSON array of events in id order, each as
-- `GET /api/bookings/{id}/events` shows it plus the booking's rider: one announcement per
-- statement (a group commit writes many events in one), split only where it would pass 7,000
-- bytes (PostgreSQL refuses a payload of 8,000).
CREATE FUNCTION ridelock_announce_events() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    item text;
    batch text := '';
BEGIN
    FOR item IN
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
        )::text
        FROM new_events e JOIN bookings b ON b.id = e.booking_id
        ORDER BY e.id
    LOOP
        -- The API keeps every field short, but the table does not bound a request id: an
        -- event too large to announce is not announced (PostgreSQL would fail the writer's
        -- transaction), and a payload the nodes cannot read makes every stream read the trail.
        IF octet_length(item) > 6990 THEN
            PERFORM pg_notify('ridelock_events', '"too large"');
            CONTINUE;
        END IF;
        -- The payload is the batch, a comma and the item, in brackets: at most 7,000 bytes.
        IF batch <> '' AND octet_length(batch) + octet_length(item) + 3 > 7000 THEN
            PERFORM pg_notify('ridelock_events', '[' || batch || ']');
            batch := '';
        END IF;
        batch := CASE WHEN batch = '' THEN item ELSE batch || ',' || item END;
    END LOOP;
    IF batch <> '' THEN
        PERFORM pg_notify('ridelock_events', '[' || batch || ']');
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER booking_events_announce
    AFTER INSERT ON booking_events
    REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT EXECUTE FUNCTION ridelock_announce_events();
