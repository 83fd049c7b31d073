-- A token carries its account's version when issued; raising the version (a password change, an admin's
-- revocation) makes every earlier token of the account stop working at once.
ALTER TABLE users ADD COLUMN token_version BIGINT NOT NULL DEFAULT 0;

-- Who may not buy or be issued tokens, until when (NULL: until removed). `subject` is a user id or an address,
-- as `kind` says, in canonical text.
CREATE TABLE blacklist (
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    until BIGINT,
    reason TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (kind, subject)
);
