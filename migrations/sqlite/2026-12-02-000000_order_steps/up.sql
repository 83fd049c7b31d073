-- When each step of an order's life after its reservation was taken (NULL: not taken); `status` is where the
-- steps lead.
ALTER TABLE orders ADD COLUMN paid_at BIGINT;
ALTER TABLE orders ADD COLUMN expired_at BIGINT;
ALTER TABLE orders ADD COLUMN cancelled_at BIGINT;
ALTER TABLE orders ADD COLUMN released_at BIGINT;
ALTER TABLE orders ADD COLUMN refund_requested_at BIGINT;
ALTER TABLE orders ADD COLUMN refunded_at BIGINT;
