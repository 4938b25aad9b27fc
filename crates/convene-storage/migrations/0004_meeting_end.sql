-- When a host ended the meeting (milliseconds since the Unix epoch); no joins after.
ALTER TABLE meetings ADD COLUMN ended_at INTEGER;
