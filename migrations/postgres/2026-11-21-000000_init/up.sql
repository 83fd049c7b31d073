CREATE TABLE users (
    id            BIGSERIAL PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    password_hash TEXT,
    role          TEXT NOT NULL,
    created_at    BIGINT NOT NULL
);

CREATE TABLE products (
    id             BIGSERIAL PRIMARY KEY,
    name           TEXT NOT NULL,
    price_cents    BIGINT NOT NULL,
    stock          INTEGER NOT NULL,
    per_user_limit INTEGER NOT NULL,
    shards         INTEGER NOT NULL,
    starts_at      BIGINT NOT NULL,
    ends_at        BIGINT NOT NULL,
    created_at     BIGINT NOT NULL
);

CREATE TABLE journal (
    position   BIGINT PRIMARY KEY,
    product_id BIGINT NOT NULL,
    payload    TEXT NOT NULL
);
CREATE INDEX journal_by_product ON journal (product_id, position);

CREATE TABLE snapshots (
    product_id BIGINT PRIMARY KEY,
    position   BIGINT NOT NULL,
    body       TEXT NOT NULL,
    taken_at   BIGINT NOT NULL
);

CREATE TABLE orders (
    order_id         TEXT PRIMARY KEY,
    product_id       BIGINT NOT NULL,
    user_id          BIGINT NOT NULL,
    quantity         INTEGER NOT NULL,
    status           TEXT NOT NULL,
    reserved_at      BIGINT NOT NULL,
    pay_before       BIGINT NOT NULL,
    journal_position BIGINT NOT NULL
);
CREATE INDEX orders_by_user ON orders (user_id, reserved_at);
CREATE INDEX orders_by_product ON orders (product_id);

CREATE TABLE projector_offsets (
    name     TEXT PRIMARY KEY,
    position BIGINT NOT NULL
);
