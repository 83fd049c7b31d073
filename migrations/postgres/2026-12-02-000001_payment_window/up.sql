-- Seconds each buyer of the sale has to pay; sales created before had the configured default, 900.
ALTER TABLE products ADD COLUMN payment_window_secs INTEGER NOT NULL DEFAULT 900;
