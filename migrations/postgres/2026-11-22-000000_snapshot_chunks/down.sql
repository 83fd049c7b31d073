DROP TABLE snapshot_chunks;
DROP TABLE snapshots;
CREATE TABLE snapshots (
    product_id BIGINT PRIMARY KEY,
    position   BIGINT NOT NULL,
    body       TEXT NOT NULL,
    taken_at   BIGINT NOT NULL
);
