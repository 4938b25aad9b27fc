-- The PostgreSQL schema, as SQLite's migrations 0001 to 0009 leave theirs:
-- the same tables and columns (data.md describes both; a test compares
-- them), integers as BIGINT, bytes as BYTEA. Later versions add a file here
-- and one in migrations/ with the same number.
CREATE TABLE meetings (
    id            TEXT PRIMARY KEY,
    title         TEXT NOT NULL,
    created_at    BIGINT NOT NULL,           -- seconds since the Unix epoch
    host_key_hash TEXT NOT NULL DEFAULT '',
    passcode_hash TEXT,
    settings      TEXT NOT NULL DEFAULT '{}',
    ended_at      BIGINT,                    -- milliseconds since the Unix epoch
    locked        BIGINT NOT NULL DEFAULT 0,
    level         TEXT NOT NULL DEFAULT ''
);
CREATE TABLE audit_log (
    seq        BIGINT PRIMARY KEY,
    at         BIGINT NOT NULL,
    meeting    TEXT NOT NULL,
    actor      TEXT NOT NULL,
    subject    TEXT NOT NULL,
    event      TEXT NOT NULL,
    outcome    TEXT NOT NULL,
    detail     TEXT NOT NULL,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL
);
CREATE INDEX audit_log_meeting ON audit_log (meeting, seq);
CREATE TABLE meeting_grants (
    meeting TEXT NOT NULL REFERENCES meetings (id) ON DELETE CASCADE,
    person  TEXT NOT NULL,
    role    TEXT NOT NULL,
    PRIMARY KEY (meeting, person)
);
CREATE TABLE meeting_bars (
    meeting   TEXT NOT NULL REFERENCES meetings (id) ON DELETE CASCADE,
    person    TEXT NOT NULL,
    barred_at BIGINT NOT NULL,
    PRIMARY KEY (meeting, person)
);
CREATE TABLE meeting_returns (
    meeting     TEXT NOT NULL REFERENCES meetings (id) ON DELETE CASCADE,
    participant TEXT NOT NULL,
    held_at     BIGINT NOT NULL,
    data        TEXT NOT NULL,
    PRIMARY KEY (meeting, participant)
);
CREATE TABLE audit_purges (
    rows  BIGINT PRIMARY KEY,
    head  TEXT NOT NULL,
    at    BIGINT NOT NULL,
    key   TEXT,
    mac   TEXT NOT NULL
);
CREATE TABLE meeting_chat (
    meeting    TEXT NOT NULL REFERENCES meetings (id) ON DELETE CASCADE,
    id         BIGINT NOT NULL,
    sent_at    BIGINT NOT NULL,
    keep_until BIGINT NOT NULL,
    sealed     BYTEA NOT NULL,
    PRIMARY KEY (meeting, id)
);
CREATE INDEX meeting_chat_keep_until ON meeting_chat (keep_until);

-- Append-only, as in SQLite: the audit log changes only by appending, and
-- loses rows only by retention, at or below a purge record; purge records
-- are never changed or removed.
CREATE FUNCTION convene_audit_log_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        RAISE EXCEPTION 'the audit log is append-only';
    END IF;
    IF OLD.seq > (SELECT coalesce(max(rows), 0) FROM audit_purges) THEN
        RAISE EXCEPTION 'the audit log is append-only: rows go only by retention, at or below a purge record';
    END IF;
    RETURN OLD;
END $$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION convene_audit_log_guard();
CREATE FUNCTION convene_audit_purges_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'purge records are append-only';
END $$;
CREATE TRIGGER audit_purges_append_only BEFORE UPDATE OR DELETE ON audit_purges
    FOR EACH ROW EXECUTE FUNCTION convene_audit_purges_guard();
