-- Answers to requests sent with an Idempotency-Key header. A row is written in the transaction of
-- the change it answers, so it exists exactly when the change does; a repeat of the request gets
-- the stored answer and changes nothing.
CREATE TABLE idempotency_keys (
    key          TEXT PRIMARY KEY CHECK (length(key) BETWEEN 1 AND 255),
    -- SHA-256 of the method, path and body: a key reused for another request is refused.
    fingerprint  TEXT NOT NULL CHECK (length(fingerprint) = 64),
    status       SMALLINT NOT NULL CHECK (status BETWEEN 200 AND 299),
    body         TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
