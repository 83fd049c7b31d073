ALTER TABLE products DROP COLUMN payment_window_secs;
