-- Sessions and their refresh tokens (SQLite).
--
-- Applied by `portcullis migrate` (or at start when configured) inside one
-- BEGIN IMMEDIATE transaction, so two processes sharing the file apply it
-- once. Never edit a released migration: the applied checksum is verified.
--
-- Times are INTEGER milliseconds since the Unix epoch, UTC. Session ids are
-- lowercase hyphenated UUID text, so the file reads well in the sqlite3 shell.

CREATE TABLE portcullis_sessions (
    id             TEXT    NOT NULL PRIMARY KEY CHECK (length(id) = 36),
    subject        TEXT    NOT NULL,
    -- Claims captured at login (e.g. role), copied into every access token.
    claims         TEXT    NOT NULL DEFAULT '{}'
                           CHECK (json_valid(claims) AND json_type(claims) = 'object'),
    device_info    TEXT,
    user_agent     TEXT,
    ip             TEXT,
    created_at     INTEGER NOT NULL,
    last_used_at   INTEGER NOT NULL,
    -- Absolute end of the session: no refresh token of it works afterwards.
    expires_at     INTEGER NOT NULL,
    revoked_at     INTEGER,
    revoked_reason TEXT    CHECK (revoked_reason IN ('logout', 'logout_all', 'session_deleted',
                                                     'reuse_detected', 'admin', 'expired')),
    CHECK ((revoked_at IS NULL) = (revoked_reason IS NULL))
) STRICT, WITHOUT ROWID;

-- GET /sessions, logout-all.
CREATE INDEX portcullis_sessions_subject_idx ON portcullis_sessions (subject);
-- Cleanup of expired sessions, active-session count.
CREATE INDEX portcullis_sessions_expires_at_idx ON portcullis_sessions (expires_at);
-- Revoked-session set: startup load and the polling fallback.
CREATE INDEX portcullis_sessions_revoked_at_idx ON portcullis_sessions (revoked_at)
    WHERE revoked_at IS NOT NULL;

-- Refresh tokens, stored only as SHA-256 hashes. A rotated token stays (with
-- rotated_at set) until its session is cleaned up, so presenting it again is
-- recognised as reuse.
CREATE TABLE portcullis_refresh_tokens (
    token_hash  BLOB    NOT NULL PRIMARY KEY CHECK (length(token_hash) = 32),
    session_id  TEXT    NOT NULL REFERENCES portcullis_sessions (id) ON DELETE CASCADE,
    -- 0 for the token issued at login, +1 per rotation.
    generation  INTEGER NOT NULL CHECK (generation >= 0),
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    -- When it was exchanged for its successor; NULL while it is current.
    rotated_at  INTEGER,
    -- Hash of the token it replaced; NULL for generation 0.
    parent_hash BLOB    CHECK (parent_hash IS NULL OR length(parent_hash) = 32)
) STRICT, WITHOUT ROWID;

CREATE INDEX portcullis_refresh_tokens_session_id_idx ON portcullis_refresh_tokens (session_id);
CREATE INDEX portcullis_refresh_tokens_expires_at_idx ON portcullis_refresh_tokens (expires_at);
