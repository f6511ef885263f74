//! Every SQL statement, shared by both backends: SQLite and PostgreSQL both
//! accept `$n` placeholders, `ON CONFLICT ... DO UPDATE ... WHERE` and
//! `RETURNING`, so one text serves both (`backend.rs` instantiates them).

macro_rules! upsert_checkout {
    ($when:literal) => {
        concat!(
            "INSERT INTO checkouts (request_id, user_id, amount_cents, currency, purpose, status, ",
            "session_id, session_url, payment_intent_id, error_message, created_at, updated_at) ",
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11) ",
            "ON CONFLICT (request_id) DO UPDATE SET status = excluded.status, ",
            "session_id = COALESCE(excluded.session_id, checkouts.session_id), ",
            "session_url = COALESCE(excluded.session_url, checkouts.session_url), ",
            "payment_intent_id = COALESCE(excluded.payment_intent_id, checkouts.payment_intent_id), ",
            "error_message = COALESCE(excluded.error_message, checkouts.error_message), ",
            "updated_at = excluded.updated_at WHERE ",
            $when
        )
    };
}

/// A checkout the HTTP API just sent; never overwrites what the consumer recorded.
pub const INSERT_REQUESTED: &str = "INSERT INTO checkouts (request_id, user_id, amount_cents, currency, purpose, status, \
     created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 'requested', $6, $6) ON CONFLICT (request_id) DO NOTHING";

/// `session_created` never moves an ended checkout back.
pub const UPSERT_SESSION_CREATED: &str =
    upsert_checkout!("checkouts.status IN ('requested', 'session_created')");

/// `failed` never overrides a success.
pub const UPSERT_FAILED: &str = upsert_checkout!("checkouts.status <> 'success'");

/// `success` ends every other state.
pub const UPSERT_SUCCESS: &str = upsert_checkout!("checkouts.status <> 'success'");

pub const SELECT_CHECKOUT: &str = "SELECT request_id, user_id, amount_cents, currency, purpose, status, session_id, \
     session_url, payment_intent_id, error_message, created_at, updated_at FROM checkouts WHERE request_id = $1";

macro_rules! ledger_columns {
    () => {
        "id, request_id, user_id, amount_cents, currency, purpose, session_id, payment_intent_id, event_timestamp, recorded_at"
    };
}

/// The credit; `DO NOTHING` makes a concurrent duplicate insert nothing.
pub const INSERT_LEDGER: &str = "INSERT INTO ledger (request_id, user_id, amount_cents, currency, purpose, session_id, \
     payment_intent_id, event_timestamp, recorded_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
     ON CONFLICT (request_id) DO NOTHING";

pub const ADD_TO_BALANCE: &str = "INSERT INTO balances (user_id, currency, balance_cents, updated_at) \
     VALUES ($1, $2, $3, $4) ON CONFLICT (user_id, currency) DO UPDATE \
     SET balance_cents = balances.balance_cents + excluded.balance_cents, updated_at = excluded.updated_at \
     RETURNING balance_cents";

pub const INSERT_FLAGGED: &str = "INSERT INTO flagged_events (request_id, user_id, amount_cents, currency, status, \
     reason, payload, flagged_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
     ON CONFLICT (request_id, user_id, amount_cents, currency, status) DO NOTHING";

pub const SELECT_FLAGGED: &str = "SELECT request_id, user_id, amount_cents, currency, status, reason, payload, \
     flagged_at FROM flagged_events WHERE request_id = $1 ORDER BY id";

pub const SELECT_BALANCES: &str =
    "SELECT currency, balance_cents, updated_at FROM balances WHERE user_id = $1 ORDER BY currency";

pub const SELECT_LEDGER_BY_REQUEST: &str = concat!(
    "SELECT ",
    ledger_columns!(),
    " FROM ledger WHERE request_id = $1 ORDER BY id"
);

pub const SELECT_RECENT_LEDGER: &str = concat!(
    "SELECT ",
    ledger_columns!(),
    " FROM ledger WHERE user_id = $1 ORDER BY id DESC LIMIT $2"
);

/// At most this many request_ids per look-up (well under both databases' bind limits).
pub const PREFETCH_CHUNK: usize = 500;

/// The terms of the credited checkouts among `n` request_ids.
pub fn select_credited_in(n: usize) -> String {
    format!(
        "SELECT request_id, user_id, amount_cents, currency FROM ledger WHERE request_id IN ({})",
        placeholders(n)
    )
}

/// The recorded terms and status of the checkouts among `n` request_ids.
pub fn select_recorded_in(n: usize) -> String {
    format!(
        "SELECT request_id, user_id, amount_cents, currency, status FROM checkouts WHERE request_id IN ({})",
        placeholders(n)
    )
}

fn placeholders(n: usize) -> String {
    (1..=n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}
