-- Booking leases while Redis is silent: the same protocol as the Redis keys (a key, a holder's
-- value `<node>:<uuid>`, an expiry), on PostgreSQL's clock so that every node judges expiry the
-- same way. A row is taken by a conditional upsert (free, expired, or already ours), renewed only
-- while it is live and still ours, and deleted by check-and-delete. `owner_address` lets another
-- node forward to the holder without asking Redis where it is.
CREATE TABLE leases (
    key           TEXT PRIMARY KEY,
    value         TEXT NOT NULL,
    owner_address TEXT NOT NULL,
    expires_at    TIMESTAMPTZ NOT NULL
);
