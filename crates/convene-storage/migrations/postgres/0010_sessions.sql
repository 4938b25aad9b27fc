-- Sign-in sessions, kept in the database when several nodes share it (a
-- person stays signed in whichever node serves the page), and the one-time
-- codes that carry a session from one node's name to another's. A single
-- node keeps sessions in memory and leaves these tables empty.
CREATE TABLE sessions (
    hash       TEXT PRIMARY KEY,   -- SHA-256 of the cookie's value
    family     TEXT NOT NULL,      -- the first cookie's hash: one sign-in, every node's cookie for it
    data       TEXT NOT NULL,      -- JSON: identity, person key, CSRF token
    expires_at BIGINT NOT NULL     -- milliseconds since the Unix epoch
);
CREATE INDEX sessions_family ON sessions (family);
CREATE INDEX sessions_expires_at ON sessions (expires_at);
CREATE TABLE session_handoffs (
    hash       TEXT PRIMARY KEY,   -- SHA-256 of the one-time code
    family     TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
