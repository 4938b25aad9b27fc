-- Secrets every node that shares the database must hold alike, made by the
-- first node that needs one: the key that tags sign-in cookies, so that a
-- cookie no node made is refused without a read of `sessions`. A single node
-- with SQLite makes none (its sessions stay in memory).
CREATE TABLE node_secrets (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL        -- hex
);
