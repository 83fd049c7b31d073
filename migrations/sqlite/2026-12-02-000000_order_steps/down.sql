ALTER TABLE orders DROP COLUMN refunded_at;
ALTER TABLE orders DROP COLUMN refund_requested_at;
ALTER TABLE orders DROP COLUMN released_at;
ALTER TABLE orders DROP COLUMN cancelled_at;
ALTER TABLE orders DROP COLUMN expired_at;
ALTER TABLE orders DROP COLUMN paid_at;
