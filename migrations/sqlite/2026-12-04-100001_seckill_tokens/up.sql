-- A sale that sells only to buyers holding a seckill token (POST /api/v1/products/{id}/token).
ALTER TABLE products ADD COLUMN requires_token BOOLEAN NOT NULL DEFAULT FALSE;
