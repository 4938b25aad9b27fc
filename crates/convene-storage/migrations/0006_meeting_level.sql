-- The meeting's handling level (an id from the deployment's policy; empty: the lowest).
ALTER TABLE meetings ADD COLUMN level TEXT NOT NULL DEFAULT '';
