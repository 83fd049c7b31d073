-- A snapshot is written in chunks, each its own short transaction, so a large sale's snapshot never holds the
-- single SQLite writer (or a PostgreSQL row) for long; `snapshots` points at the generation of chunks that is
-- complete. Snapshots are a cache of the journal: the old ones are dropped, and recovery replays the journal once.
DROP TABLE snapshots;
CREATE TABLE snapshots (
    product_id BIGINT PRIMARY KEY,
    position   BIGINT NOT NULL,
    generation BIGINT NOT NULL,
    chunks     INTEGER NOT NULL,
    taken_at   BIGINT NOT NULL
);
CREATE TABLE snapshot_chunks (
    product_id BIGINT NOT NULL,
    generation BIGINT NOT NULL,
    seq        INTEGER NOT NULL,
    data       TEXT NOT NULL,
    PRIMARY KEY (product_id, generation, seq)
);
