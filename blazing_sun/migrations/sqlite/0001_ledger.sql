-- blazing_sun schema (SQLite). Keep in step with ../postgres/0001_ledger.sql.
-- Timestamps are ISO 8601 UTC text ("2024-01-15T10:30:00Z"), which sorts in time order.

-- Every checkout this service knows about, with its latest status.
CREATE TABLE checkouts (
    request_id        TEXT PRIMARY KEY NOT NULL,
    user_id           INTEGER NOT NULL,
    amount_cents      INTEGER NOT NULL,
    currency          TEXT NOT NULL,
    purpose           TEXT NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('requested', 'session_created', 'success', 'failed')),
    session_id        TEXT,
    session_url       TEXT,
    payment_intent_id TEXT,
    error_message     TEXT,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL
);
CREATE INDEX checkouts_by_user ON checkouts (user_id);

-- The append-only ledger: one row per credited checkout, never updated or deleted.
CREATE TABLE ledger (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id        TEXT NOT NULL UNIQUE,
    user_id           INTEGER NOT NULL,
    amount_cents      INTEGER NOT NULL CHECK (amount_cents > 0),
    currency          TEXT NOT NULL,
    purpose           TEXT NOT NULL,
    session_id        TEXT,
    payment_intent_id TEXT,
    event_timestamp   TEXT NOT NULL,
    recorded_at       TEXT NOT NULL
);
CREATE INDEX ledger_by_user ON ledger (user_id, id);
CREATE TRIGGER ledger_is_append_only_update BEFORE UPDATE ON ledger
BEGIN
    SELECT RAISE(ABORT, 'ledger is append-only');
END;
CREATE TRIGGER ledger_is_append_only_delete BEFORE DELETE ON ledger
BEGIN
    SELECT RAISE(ABORT, 'ledger is append-only');
END;

-- The sum of the ledger per (user, currency), in minor units.
CREATE TABLE balances (
    user_id       INTEGER NOT NULL,
    currency      TEXT NOT NULL,
    balance_cents INTEGER NOT NULL,
    updated_at    TEXT NOT NULL,
    PRIMARY KEY (user_id, currency)
);

-- Events a person must look at (a success contradicting an earlier record).
CREATE TABLE flagged_events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id   TEXT NOT NULL,
    user_id      INTEGER NOT NULL,
    amount_cents INTEGER NOT NULL,
    currency     TEXT NOT NULL,
    status       TEXT NOT NULL,
    reason       TEXT NOT NULL,
    payload      TEXT NOT NULL,
    flagged_at   TEXT NOT NULL,
    UNIQUE (request_id, user_id, amount_cents, currency, status)
);
