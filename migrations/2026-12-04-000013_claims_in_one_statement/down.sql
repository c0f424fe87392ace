-- Puts back migration 000012's function (its text, unchanged), for a build that still calls it.
-- Assigns a batch of pending bookings in one call (the group-commit writer's claims): the
-- bookings are taken in the order given, each assigned to the first driver among its own
-- candidates that is online, free, of its vehicle class if it asks for one, and not locked by
-- another transaction (SKIP LOCKED: a claim in a batch never waits, so batches cannot deadlock
-- on drivers). A driver claimed for an earlier booking of the batch is busy by the time a later
-- one looks (each statement of a PL/pgSQL function sees the function's earlier changes), so one
-- batch never gives a driver twice, and the partial unique index still refuses it in any case.
--
-- Each booking keeps its own condition: it is assigned only while pending under its token, and
-- the driver is claimed only for a booking so updated, so a fenced booking claims nobody; the
-- others are written all the same.
--
-- p_candidates holds every booking's candidates one after the other, p_counts how many each has.
-- Returns one row per booking, by position (from 1): the driver it claimed, or NULL and whether
-- it is fenced (no longer pending under its token, read after the claim with a fresh snapshot)
-- rather than left without a free candidate.
CREATE FUNCTION assign_bookings(
    p_ids BIGINT[],
    p_tokens BIGINT[],
    p_candidates BIGINT[],
    p_counts INT[],
    p_vehicle_types TEXT[],
    p_request_ids TEXT[],
    p_actors TEXT[],
    p_at TIMESTAMPTZ,
    p_node_id TEXT
) RETURNS TABLE (ord INT, claimed BIGINT, fenced BOOLEAN) LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    next_at INT := 1;
    mine BIGINT[];
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_ids, 1), 0) LOOP
        mine := p_candidates[next_at : next_at + p_counts[i] - 1];
        next_at := next_at + p_counts[i];
        WITH pick AS (
            SELECT d.id FROM drivers d
            WHERE d.id = ANY(mine) AND d.status = 'online' AND d.current_booking_id IS NULL
              AND (p_vehicle_types[i] IS NULL OR d.vehicle_type = p_vehicle_types[i])
              AND EXISTS (SELECT 1 FROM bookings bk WHERE bk.id = p_ids[i]
                          AND bk.fencing_token = p_tokens[i] AND bk.status = 'pending')
            ORDER BY array_position(mine, d.id)
            LIMIT 1
            FOR UPDATE SKIP LOCKED
        ), b AS (
            UPDATE bookings SET status = 'assigned', driver_id = pick.id, assigned_at = p_at,
                                updated_at = p_at
            FROM pick
            WHERE bookings.id = p_ids[i] AND bookings.fencing_token = p_tokens[i]
              AND bookings.status = 'pending'
            RETURNING bookings.id, bookings.driver_id, bookings.status
        ), c AS (
            UPDATE drivers SET status = 'busy', current_booking_id = b.id, updated_at = now()
            FROM b WHERE drivers.id = b.driver_id
            RETURNING drivers.id
        ), e AS (
            INSERT INTO booking_events
                (booking_id, from_status, to_status, driver_id, node_id, fencing_token,
                 request_id, actor)
            SELECT b.id, 'pending', b.status, b.driver_id, p_node_id, p_tokens[i],
                   p_request_ids[i], p_actors[i]
            FROM b
        )
        SELECT c.id INTO claimed FROM c;
        ord := i;
        fenced := claimed IS NULL AND NOT EXISTS (
            SELECT 1 FROM bookings bk
            WHERE bk.id = p_ids[i] AND bk.fencing_token = p_tokens[i] AND bk.status = 'pending');
        RETURN NEXT;
    END LOOP;
END;
$$;
