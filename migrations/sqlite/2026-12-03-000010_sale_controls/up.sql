-- The admin's switch on each sale ('open', 'paused' or 'draining'), kept so a restarted service finds it as it was.
ALTER TABLE products ADD COLUMN sale TEXT NOT NULL DEFAULT 'open';
-- The admin's switch over every sale: one row (id 1) once an admin has set it; no row means open.
CREATE TABLE sale_switch (
    id INTEGER PRIMARY KEY,
    state TEXT NOT NULL,
    changed_at BIGINT NOT NULL
);
