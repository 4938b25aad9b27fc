-- Chat kept where a meeting's handling level keeps it (chat_retention_days
-- above 0), sealed with the deployment's chat key (AES-256-GCM; the meeting
-- and message id are authenticated with it, so a row cannot be moved to
-- another meeting or place). Each row goes at keep_until (retention purge),
-- or with its meeting.
CREATE TABLE meeting_chat (
    meeting    TEXT NOT NULL REFERENCES meetings (id) ON DELETE CASCADE,
    id         INTEGER NOT NULL,  -- the message's number in the meeting
    sent_at    INTEGER NOT NULL,  -- milliseconds since the Unix epoch
    keep_until INTEGER NOT NULL,  -- milliseconds since the Unix epoch
    sealed     BLOB NOT NULL,     -- nonce (12 bytes), then the sealed message (JSON) and its tag
    PRIMARY KEY (meeting, id)
);
CREATE INDEX meeting_chat_keep_until ON meeting_chat (keep_until);
