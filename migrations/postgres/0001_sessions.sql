-- Sessions and their refresh tokens (Postgres).
--
-- Applied by `portcullis migrate` (or at start when configured) inside one
-- transaction holding an advisory lock, so gateways starting together apply it
-- once. Never edit a released migration: the applied checksum is verified.
--
-- Times are timestamptz; the gateway writes and reads them as whole
-- milliseconds since the Unix epoch.

CREATE TABLE portcullis_sessions (
    id             uuid        PRIMARY KEY,
    subject        text        NOT NULL,
    -- Claims captured at login (e.g. role), copied into every access token.
    claims         jsonb       NOT NULL DEFAULT '{}'::jsonb,
    device_info    text,
    user_agent     text,
    ip             text,
    created_at     timestamptz NOT NULL,
    last_used_at   timestamptz NOT NULL,
    -- Absolute end of the session: no refresh token of it works afterwards.
    expires_at     timestamptz NOT NULL,
    revoked_at     timestamptz,
    revoked_reason text,
    CONSTRAINT portcullis_sessions_claims_object
        CHECK (jsonb_typeof(claims) = 'object'),
    CONSTRAINT portcullis_sessions_revoked_reason_known
        CHECK (revoked_reason IN ('logout', 'logout_all', 'session_deleted',
                                  'reuse_detected', 'admin', 'expired')),
    CONSTRAINT portcullis_sessions_revocation_complete
        CHECK ((revoked_at IS NULL) = (revoked_reason IS NULL))
);

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
    token_hash  bytea       PRIMARY KEY,
    session_id  uuid        NOT NULL REFERENCES portcullis_sessions (id) ON DELETE CASCADE,
    -- 0 for the token issued at login, +1 per rotation.
    generation  integer     NOT NULL,
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    -- When it was exchanged for its successor; NULL while it is current.
    rotated_at  timestamptz,
    -- Hash of the token it replaced; NULL for generation 0.
    parent_hash bytea,
    CONSTRAINT portcullis_refresh_tokens_hash_is_sha256
        CHECK (octet_length(token_hash) = 32),
    CONSTRAINT portcullis_refresh_tokens_parent_is_sha256
        CHECK (parent_hash IS NULL OR octet_length(parent_hash) = 32),
    CONSTRAINT portcullis_refresh_tokens_generation_non_negative
        CHECK (generation >= 0)
);

CREATE INDEX portcullis_refresh_tokens_session_id_idx ON portcullis_refresh_tokens (session_id);
CREATE INDEX portcullis_refresh_tokens_expires_at_idx ON portcullis_refresh_tokens (expires_at);
