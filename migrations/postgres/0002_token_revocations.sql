-- Revocations of tokens the gateway did not mint (Postgres): by `jti`, by
-- subject (`sub`, tokens issued up to `revoked_at`) or by the identity
-- provider's session (`sid`), per issuer (`iss`). Each row is kept until no
-- token issued before it can still be valid (`keep_until`), then cleaned up.
-- Every insert is announced on the revocation channel.
CREATE TABLE portcullis_token_revocations (
    kind       text        NOT NULL,
    iss        text        NOT NULL,
    value      text        NOT NULL,
    revoked_at timestamptz NOT NULL,
    keep_until timestamptz NOT NULL,
    PRIMARY KEY (iss, kind, value),
    CONSTRAINT portcullis_token_revocations_kind_known
        CHECK (kind IN ('jti', 'sub', 'sid'))
);

-- Start-up load and the polling fallback.
CREATE INDEX portcullis_token_revocations_revoked_at_idx
    ON portcullis_token_revocations (revoked_at);
-- Cleanup.
CREATE INDEX portcullis_token_revocations_keep_until_idx
    ON portcullis_token_revocations (keep_until);

-- `jti`s of OpenID Connect back-channel logout tokens already received, so a
-- replayed one is refused on every node; kept until the token expires.
CREATE TABLE portcullis_logout_tokens (
    iss        text        NOT NULL,
    jti        text        NOT NULL,
    used_at    timestamptz NOT NULL,
    keep_until timestamptz NOT NULL,
    PRIMARY KEY (iss, jti)
);

CREATE INDEX portcullis_logout_tokens_keep_until_idx ON portcullis_logout_tokens (keep_until);
