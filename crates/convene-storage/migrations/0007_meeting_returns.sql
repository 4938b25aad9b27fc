-- Who was in a meeting when the server stopped gracefully for a restart, so
-- that they come back as themselves (role, identity) by resuming: written at
-- the stop, read and deleted when the meeting starts again (or by age). The
-- resume token is kept only as a hash.
CREATE TABLE meeting_returns (
    meeting     TEXT NOT NULL REFERENCES meetings (id) ON DELETE CASCADE,
    participant TEXT NOT NULL,
    held_at     INTEGER NOT NULL,  -- milliseconds since the Unix epoch
    data        TEXT NOT NULL,     -- JSON: name, role, person key, identity, resume token hash
    PRIMARY KEY (meeting, participant)
);
