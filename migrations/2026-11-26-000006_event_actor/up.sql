-- Who asked for each change: the caller's token subject (`rider:12`, `driver:7`, `ops:alice`;
-- `ops:anonymous` when authentication is off) or `system:seed` for the demo data. Rows written
-- before this migration have none. Nullable rather than NOT NULL with a default, so nodes still
-- running the previous build keep writing events while a rolling upgrade migrates.
ALTER TABLE booking_events ADD COLUMN actor TEXT CHECK (length(actor) BETWEEN 1 AND 80);
