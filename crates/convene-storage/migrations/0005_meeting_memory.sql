-- What a meeting remembers across restarts besides its settings: whether it is
-- locked, the roles hosts granted, and who they barred. People are known by a
-- key the server derives (a hash of their browser's device cookie), never by name.
ALTER TABLE meetings ADD COLUMN locked INTEGER NOT NULL DEFAULT 0;
CREATE TABLE meeting_grants (
    meeting TEXT NOT NULL REFERENCES meetings (id) ON DELETE CASCADE,
    person  TEXT NOT NULL,
    role    TEXT NOT NULL,
    PRIMARY KEY (meeting, person)
);
CREATE TABLE meeting_bars (
    meeting   TEXT NOT NULL REFERENCES meetings (id) ON DELETE CASCADE,
    person    TEXT NOT NULL,
    barred_at INTEGER NOT NULL,
    PRIMARY KEY (meeting, person)
);
