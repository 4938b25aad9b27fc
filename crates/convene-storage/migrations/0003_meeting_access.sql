-- Who may get in: the host key (only its SHA-256 is kept; the key itself is shown
-- once, in the host link), the passcode (only an Argon2 hash), and the settings.
ALTER TABLE meetings ADD COLUMN host_key_hash TEXT NOT NULL DEFAULT '';
ALTER TABLE meetings ADD COLUMN passcode_hash TEXT;
ALTER TABLE meetings ADD COLUMN settings TEXT NOT NULL DEFAULT '{}';
