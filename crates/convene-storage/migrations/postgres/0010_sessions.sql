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
-- TRUNCATE skips row triggers: refuse it for both append-only tables. (Here,
-- not in 0009: databases made by 0009 as first released lack it. A database
-- made when 0009 held it has it already: replaced the same.)
CREATE OR REPLACE FUNCTION convene_no_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: it cannot be truncated', TG_TABLE_NAME;
END $$;
DROP TRIGGER IF EXISTS audit_log_no_truncate ON audit_log;
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION convene_no_truncate();
DROP TRIGGER IF EXISTS audit_purges_no_truncate ON audit_purges;
CREATE TRIGGER audit_purges_no_truncate BEFORE TRUNCATE ON audit_purges
    FOR EACH STATEMENT EXECUTE FUNCTION convene_no_truncate();
