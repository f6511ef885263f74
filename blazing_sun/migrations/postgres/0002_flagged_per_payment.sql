-- A second real payment for a credited checkout has the same terms as the
-- first (user, amount, currency): each payment (session, payment intent)
-- is a flagged row of its own; a redelivery of one is still one row.
ALTER TABLE flagged_events ADD COLUMN session_id TEXT NOT NULL DEFAULT '';
ALTER TABLE flagged_events ADD COLUMN payment_intent_id TEXT NOT NULL DEFAULT '';
DO $$
DECLARE name TEXT;
BEGIN
    SELECT conname INTO name FROM pg_constraint
     WHERE conrelid = 'flagged_events'::regclass AND contype = 'u';
    EXECUTE format('ALTER TABLE flagged_events DROP CONSTRAINT %I', name);
END $$;
ALTER TABLE flagged_events ADD CONSTRAINT flagged_events_per_payment
    UNIQUE (request_id, user_id, amount_cents, currency, status, session_id, payment_intent_id);
