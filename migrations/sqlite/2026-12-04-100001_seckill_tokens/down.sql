ALTER TABLE products DROP COLUMN requires_token;
