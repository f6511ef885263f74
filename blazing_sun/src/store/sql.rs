//! Every SQL statement. Most are shared by both backends: SQLite and
//! PostgreSQL both accept `$n` placeholders, `ON CONFLICT ... DO UPDATE ...
//! WHERE` and `RETURNING`, so one text serves both (`backend.rs`
//! instantiates them). The batch writes differ: PostgreSQL takes a whole
//! batch as arrays in one fixed statement (`INSERT ... SELECT FROM UNNEST`,
//! prepared once), SQLite as one multi-row `VALUES` statement per chunk
//! (`sqlite_*` builders; cached per row count).

/// A checkout the HTTP API just sent; never overwrites what the consumer recorded.
pub const INSERT_REQUESTED: &str = "INSERT INTO checkouts (request_id, user_id, amount_cents, currency, purpose, status, \
     created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 'requested', $6, $6) ON CONFLICT (request_id) DO NOTHING";

pub const SELECT_CHECKOUT: &str = "SELECT request_id, user_id, amount_cents, currency, purpose, status, session_id, \
     session_url, payment_intent_id, error_message, created_at, updated_at FROM checkouts WHERE request_id = $1";

macro_rules! ledger_columns {
    () => {
        "id, request_id, user_id, amount_cents, currency, purpose, session_id, payment_intent_id, event_timestamp, recorded_at"
    };
}

/// What the batch upserts do when the checkout exists: the terms stay, the
/// status moves, optional fields keep their old value when the batch has
/// none. The guard is the new status's own (the same rule as
/// `plan::moves`): `session_created` only moves `requested` or
/// `session_created` on, nothing overrides `success`.
macro_rules! upsert_checkouts_on_conflict {
    () => {
        concat!(
            " ON CONFLICT (request_id) DO UPDATE SET status = excluded.status, ",
            "session_id = COALESCE(excluded.session_id, checkouts.session_id), ",
            "session_url = COALESCE(excluded.session_url, checkouts.session_url), ",
            "payment_intent_id = COALESCE(excluded.payment_intent_id, checkouts.payment_intent_id), ",
            "error_message = COALESCE(excluded.error_message, checkouts.error_message), ",
            "updated_at = excluded.updated_at WHERE checkouts.status <> 'success' AND ",
            "(excluded.status <> 'session_created' OR checkouts.status IN ('requested', 'session_created'))"
        )
    };
}

macro_rules! checkout_columns {
    () => {
        "request_id, user_id, amount_cents, currency, purpose, status, session_id, session_url, payment_intent_id, error_message"
    };
}

macro_rules! ledger_insert_columns {
    () => {
        "request_id, user_id, amount_cents, currency, purpose, session_id, payment_intent_id, event_timestamp"
    };
}

/// PostgreSQL: the terms and payment of the credited checkouts among the request_ids in `$1` (`text[]`).
pub const PG_SELECT_CREDITED: &str = "SELECT request_id, user_id, amount_cents, currency, session_id, payment_intent_id \
     FROM ledger WHERE request_id = ANY($1)";

/// PostgreSQL: the recorded terms and status of the checkouts among the request_ids in `$1`.
pub const PG_SELECT_RECORDED: &str = "SELECT request_id, user_id, amount_cents, currency, status FROM checkouts \
     WHERE request_id = ANY($1)";

/// PostgreSQL: a batch's checkout rows, one array per column (`$1`..`$10`), at most one row per request_id.
pub const PG_UPSERT_CHECKOUTS: &str = concat!(
    "INSERT INTO checkouts (",
    checkout_columns!(),
    ", created_at, updated_at) SELECT ",
    checkout_columns!(),
    ", $11, $11 FROM UNNEST($1::text[], $2::int8[], $3::int8[], $4::text[], $5::text[], $6::text[], ",
    "$7::text[], $8::text[], $9::text[], $10::text[]) AS t(",
    checkout_columns!(),
    ")",
    upsert_checkouts_on_conflict!()
);

/// PostgreSQL: a batch's credits, in batch order (the ledger ids follow it);
/// returns the request_ids actually inserted (`DO NOTHING` skips a
/// concurrent duplicate).
pub const PG_INSERT_LEDGER: &str = concat!(
    "INSERT INTO ledger (",
    ledger_insert_columns!(),
    ", recorded_at) SELECT ",
    ledger_insert_columns!(),
    ", $9 FROM UNNEST($1::text[], $2::int8[], $3::int8[], $4::text[], $5::text[], $6::text[], ",
    "$7::text[], $8::text[]) WITH ORDINALITY AS t(",
    ledger_insert_columns!(),
    ", n) ORDER BY n ON CONFLICT (request_id) DO NOTHING RETURNING request_id"
);

/// PostgreSQL: adds each (user_id, currency, total) of `$1`..`$3` to its
/// balance; one row per key, in key order (the same lock order in every
/// transaction).
pub const PG_ADD_TO_BALANCES: &str = "INSERT INTO balances (user_id, currency, balance_cents, updated_at) \
     SELECT user_id, currency, balance_cents, $4 FROM UNNEST($1::int8[], $2::text[], $3::int8[]) \
     AS t(user_id, currency, balance_cents) ON CONFLICT (user_id, currency) DO UPDATE \
     SET balance_cents = balances.balance_cents + excluded.balance_cents, updated_at = excluded.updated_at \
     RETURNING user_id, currency, balance_cents";

/// SQLite: at most this many rows per multi-row statement (12 binds a row
/// at most: far under SQLite's 32,766 variables).
pub const SQLITE_ROWS_PER_STATEMENT: usize = 512;

// The SQLite batch statements use anonymous `?` placeholders, and bind the
// time once per row: sqlx asks SQLite for the name of every placeholder,
// and SQLite finds a numbered one (`$n`, `?n`) by scanning the statement's
// list of names, which makes binding a statement of a few thousand `$n`
// quadratic (`sqlite3_bind_parameter_name` was most of the SQLite CPU).

/// SQLite: `rows` checkout rows, 12 binds per row: `checkout_columns!`
/// order, then the time twice.
pub fn sqlite_upsert_checkouts(rows: usize) -> String {
    format!(
        concat!(
            "INSERT INTO checkouts (",
            checkout_columns!(),
            ", created_at, updated_at) VALUES {}",
            upsert_checkouts_on_conflict!()
        ),
        values(rows, 12)
    )
}

/// SQLite: `rows` credits, 9 binds per row: `ledger_insert_columns!` order,
/// then the time. Returns the request_ids inserted.
pub fn sqlite_insert_ledger(rows: usize) -> String {
    format!(
        concat!(
            "INSERT INTO ledger (",
            ledger_insert_columns!(),
            ", recorded_at) VALUES {} ON CONFLICT (request_id) DO NOTHING RETURNING request_id"
        ),
        values(rows, 9)
    )
}

/// SQLite: `rows` (user_id, currency, total, time) to add.
pub fn sqlite_add_to_balances(rows: usize) -> String {
    format!(
        "INSERT INTO balances (user_id, currency, balance_cents, updated_at) VALUES {} \
         ON CONFLICT (user_id, currency) DO UPDATE \
         SET balance_cents = balances.balance_cents + excluded.balance_cents, updated_at = excluded.updated_at \
         RETURNING user_id, currency, balance_cents",
        values(rows, 4)
    )
}

/// `(?, ?), (?, ?)` for 2 rows of 2 binds.
fn values(rows: usize, per_row: usize) -> String {
    let row = format!("({})", vec!["?"; per_row].join(", "));
    vec![row; rows].join(", ")
}

pub const INSERT_FLAGGED: &str = "INSERT INTO flagged_events (request_id, user_id, amount_cents, currency, status, \
     reason, payload, flagged_at, session_id, payment_intent_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
     ON CONFLICT (request_id, user_id, amount_cents, currency, status, session_id, payment_intent_id) DO NOTHING";

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

/// SQLite: the terms and payment of the credited checkouts among `n` request_ids.
pub fn select_credited_in(n: usize) -> String {
    format!(
        "SELECT request_id, user_id, amount_cents, currency, session_id, payment_intent_id \
         FROM ledger WHERE request_id IN ({})",
        placeholders(n)
    )
}

/// SQLite: the recorded terms and status of the checkouts among `n` request_ids.
pub fn select_recorded_in(n: usize) -> String {
    format!(
        "SELECT request_id, user_id, amount_cents, currency, status FROM checkouts WHERE request_id IN ({})",
        placeholders(n)
    )
}

/// `?, ?, ?` (anonymous, see above).
fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}
