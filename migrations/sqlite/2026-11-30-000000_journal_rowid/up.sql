-- In SQLite only a column declared exactly `INTEGER PRIMARY KEY` is the table's rowid; `BIGINT PRIMARY KEY` left
-- the journal with a hidden rowid and a separate unique index on `position`, so every append wrote three B-trees.
-- With `position` as the rowid it writes two (the rows, in position order, and `journal_by_product`).
CREATE TABLE journal_by_rowid (
    position   INTEGER PRIMARY KEY,
    product_id BIGINT NOT NULL,
    payload    TEXT NOT NULL
);
INSERT INTO journal_by_rowid (position, product_id, payload) SELECT position, product_id, payload FROM journal;
DROP TABLE journal;
ALTER TABLE journal_by_rowid RENAME TO journal;
CREATE INDEX journal_by_product ON journal (product_id, position);
