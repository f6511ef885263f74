-- blazing_sun schema (PostgreSQL). Keep in step with ../sqlite/0001_ledger.sql.
-- Timestamps are ISO 8601 UTC text ("2024-01-15T10:30:00Z"), which sorts in time order,
-- so both backends share every query.

-- Every checkout this service knows about, with its latest status.
CREATE TABLE checkouts (
    request_id        TEXT PRIMARY KEY,
    user_id           BIGINT NOT NULL,
    amount_cents      BIGINT NOT NULL,
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
    id                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request_id        TEXT NOT NULL UNIQUE,
    user_id           BIGINT NOT NULL,
    amount_cents      BIGINT NOT NULL CHECK (amount_cents > 0),
    currency          TEXT NOT NULL,
    purpose           TEXT NOT NULL,
    session_id        TEXT,
    payment_intent_id TEXT,
    event_timestamp   TEXT NOT NULL,
    recorded_at       TEXT NOT NULL
);
CREATE INDEX ledger_by_user ON ledger (user_id, id);
CREATE FUNCTION ledger_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger is append-only';
END;
$$;
CREATE TRIGGER ledger_is_append_only BEFORE UPDATE OR DELETE ON ledger
    FOR EACH ROW EXECUTE FUNCTION ledger_is_append_only();

-- The sum of the ledger per (user, currency), in minor units.
CREATE TABLE balances (
    user_id       BIGINT NOT NULL,
    currency      TEXT NOT NULL,
    balance_cents BIGINT NOT NULL,
    updated_at    TEXT NOT NULL,
    PRIMARY KEY (user_id, currency)
);

-- Events a person must look at (a success contradicting an earlier record).
CREATE TABLE flagged_events (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request_id   TEXT NOT NULL,
    user_id      BIGINT NOT NULL,
    amount_cents BIGINT NOT NULL,
    currency     TEXT NOT NULL,
    status       TEXT NOT NULL,
    reason       TEXT NOT NULL,
    payload      TEXT NOT NULL,
    flagged_at   TEXT NOT NULL,
    UNIQUE (request_id, user_id, amount_cents, currency, status)
);
