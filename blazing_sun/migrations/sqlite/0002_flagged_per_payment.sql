-- A second real payment for a credited checkout has the same terms as the
-- first (user, amount, currency): each payment (session, payment intent)
-- is a flagged row of its own; a redelivery of one is still one row.
-- SQLite cannot drop a table's UNIQUE constraint: the table is rebuilt.
CREATE TABLE flagged_events_new (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id        TEXT NOT NULL,
    user_id           INTEGER NOT NULL,
    amount_cents      INTEGER NOT NULL,
    currency          TEXT NOT NULL,
    status            TEXT NOT NULL,
    reason            TEXT NOT NULL,
    payload           TEXT NOT NULL,
    flagged_at        TEXT NOT NULL,
    session_id        TEXT NOT NULL DEFAULT '',
    payment_intent_id TEXT NOT NULL DEFAULT '',
    UNIQUE (request_id, user_id, amount_cents, currency, status, session_id, payment_intent_id)
);
INSERT INTO flagged_events_new (id, request_id, user_id, amount_cents, currency, status, reason, payload, flagged_at)
    SELECT id, request_id, user_id, amount_cents, currency, status, reason, payload, flagged_at FROM flagged_events;
DROP TABLE flagged_events;
ALTER TABLE flagged_events_new RENAME TO flagged_events;
