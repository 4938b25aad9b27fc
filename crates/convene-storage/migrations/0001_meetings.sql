-- Meetings: only what is needed to join one. Nothing about participants is stored.
CREATE TABLE meetings (
    id          TEXT PRIMARY KEY,
    title       TEXT NOT NULL,
    created_at  INTEGER NOT NULL  -- seconds since the Unix epoch
);
