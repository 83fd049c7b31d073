-- Jobs that had to happen eventually (a payment, a refund) and failed every attempt: kept for an operator to look
-- at and replay. `attempts` is the JSON list of every attempt and how it ended.
CREATE TABLE dead_letters (
    id BIGSERIAL PRIMARY KEY,
    kind TEXT NOT NULL,
    order_id TEXT NOT NULL,
    product_id BIGINT NOT NULL,
    user_id BIGINT NOT NULL,
    amount_cents BIGINT NOT NULL,
    reason TEXT NOT NULL,
    attempts TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    reprocessed_at BIGINT
);
CREATE INDEX dead_letters_pending ON dead_letters (kind, id) WHERE reprocessed_at IS NULL;
