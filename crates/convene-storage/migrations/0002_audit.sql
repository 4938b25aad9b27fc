-- The audit log: append-only, each row hash-chained to the one before it, so a
-- changed, deleted or reordered row breaks the chain (`convene audit verify`).
CREATE TABLE audit_log (
    seq        INTEGER PRIMARY KEY,   -- 1, 2, 3, … with no gaps
    at         INTEGER NOT NULL,      -- milliseconds since the Unix epoch
    meeting    TEXT NOT NULL,
    actor      TEXT NOT NULL,         -- who did it (participant or "system")
    subject    TEXT NOT NULL,         -- whom or what it was done to
    event      TEXT NOT NULL,         -- e.g. join, leave, role-change, remove
    outcome    TEXT NOT NULL,         -- e.g. admitted, denied, wrong-passcode
    detail     TEXT NOT NULL,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL
);
CREATE INDEX audit_log_meeting ON audit_log (meeting, seq);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
