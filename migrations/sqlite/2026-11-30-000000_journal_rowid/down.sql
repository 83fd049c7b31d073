CREATE TABLE journal_by_key (
    position   BIGINT PRIMARY KEY,
    product_id BIGINT NOT NULL,
    payload    TEXT NOT NULL
);
INSERT INTO journal_by_key (position, product_id, payload) SELECT position, product_id, payload FROM journal;
DROP TABLE journal;
ALTER TABLE journal_by_key RENAME TO journal;
CREATE INDEX journal_by_product ON journal (product_id, position);
