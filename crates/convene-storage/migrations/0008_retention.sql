-- Retention: audit rows older than the deployment keeps them are purged from
-- the front of the log. Each purge first records where it stopped: the last
-- purged row's number and hash, with a MAC like a checkpoint's. The chain
-- goes on from that record, so what is left stays verifiable; and rows can
-- be deleted only at or below a record (the trigger below), never in the
-- middle or at the end.
CREATE TABLE audit_purges (
    rows  INTEGER PRIMARY KEY,  -- rows 1 to `rows` are purged
    head  TEXT NOT NULL,        -- the hash row `rows` had
    at    INTEGER NOT NULL,     -- milliseconds since the Unix epoch
    key   TEXT,                 -- id of the audit key that made `mac`; NULL: unkeyed
    mac   TEXT NOT NULL         -- HMAC-SHA256 (or, unkeyed, SHA-256) of the above
);
CREATE TRIGGER audit_purges_no_update BEFORE UPDATE ON audit_purges
BEGIN SELECT RAISE(ABORT, 'purge records are append-only'); END;
CREATE TRIGGER audit_purges_no_delete BEFORE DELETE ON audit_purges
BEGIN SELECT RAISE(ABORT, 'purge records are append-only'); END;
DROP TRIGGER audit_log_no_delete;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
WHEN OLD.seq > (SELECT coalesce(max(rows), 0) FROM audit_purges)
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: rows go only by retention, at or below a purge record'); END;
