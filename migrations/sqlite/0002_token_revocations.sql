-- Revocations of tokens the gateway did not mint (SQLite): by `jti`, by
-- subject (`sub`, tokens issued up to `revoked_at`) or by the identity
-- provider's session (`sid`), per issuer (`iss`). Each row is kept until no
-- token issued before it can still be valid (`keep_until`), then cleaned up.
-- Times are INTEGER milliseconds since the Unix epoch, UTC.
CREATE TABLE portcullis_token_revocations (
    kind       TEXT    NOT NULL CHECK (kind IN ('jti', 'sub', 'sid')),
    iss        TEXT    NOT NULL,
    value      TEXT    NOT NULL,
    revoked_at INTEGER NOT NULL,
    keep_until INTEGER NOT NULL,
    PRIMARY KEY (iss, kind, value)
) STRICT, WITHOUT ROWID;

-- Start-up load.
CREATE INDEX portcullis_token_revocations_revoked_at_idx
    ON portcullis_token_revocations (revoked_at);
-- Cleanup.
CREATE INDEX portcullis_token_revocations_keep_until_idx
    ON portcullis_token_revocations (keep_until);

-- `jti`s of OpenID Connect back-channel logout tokens already received, so a
-- replayed one is refused; kept until the token expires.
CREATE TABLE portcullis_logout_tokens (
    iss        TEXT    NOT NULL,
    jti        TEXT    NOT NULL,
    used_at    INTEGER NOT NULL,
    keep_until INTEGER NOT NULL,
    PRIMARY KEY (iss, jti)
) STRICT, WITHOUT ROWID;

CREATE INDEX portcullis_logout_tokens_keep_until_idx ON portcullis_logout_tokens (keep_until);
