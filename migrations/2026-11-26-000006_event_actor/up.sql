-- Who asked for each change: the caller's token subject (`rider:12`, `driver:7`, `ops:alice`;
-- `ops:anonymous` when authentication is off) or `system:seed` for the demo data. Null on rows
-- written before this migration, and on a change forwarded by a node of an earlier build (which
-- sends no subject). Nullable rather than NOT NULL with a default, so a node of the previous build
-- that is still running keeps writing events after this migration ran.
ALTER TABLE booking_events ADD COLUMN actor TEXT CHECK (length(actor) BETWEEN 1 AND 80);
