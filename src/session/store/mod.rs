//! Session storage: sessions and their refresh tokens behind one
//! [`SessionStore`] trait, with a Postgres implementation (production,
//! multi-node) and an SQLite one (single node, zero setup).
//!
//! The gateway mints access JWTs itself; what it keeps is one row per login
//! (subject, captured claims, device details, absolute expiry, revocation) and
//! one row per refresh token ever issued for it, keyed by the token's SHA-256.
//! Raw refresh tokens never reach the store.
//!
//! Refresh tokens rotate: exchanging one marks it rotated and stores its
//! successor. Presenting a rotated token again within a short grace window
//! (concurrent browser tabs) still succeeds with a fresh sibling token;
//! presenting it later is treated as theft and revokes the whole session
//! ([`RefreshOutcome`]). Every multi-row change is one transaction, and the
//! exchange is serialised per session (row lock in Postgres, `BEGIN IMMEDIATE`
//! in SQLite), so two concurrent exchanges of one token never both rotate it.
//!
//! Times are [`Timestamp`]s: whole milliseconds since the Unix epoch, passed in
//! by the caller (`now`) so behaviour is testable and all nodes agree on what
//! "expired" means for a given request.

mod migrations;
mod postgres;
mod sqlite;
mod timestamp;
mod token;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;
use uuid::Uuid;

pub use crate::revoked::{RevocationKind, TokenRevocation};

pub use postgres::{PostgresStore, REVOCATION_CHANNEL};
pub use sqlite::SqliteStore;
pub use timestamp::Timestamp;
pub use token::{hash_refresh_token, new_refresh_token};

/// Claims captured at login and copied into every access token of the session.
pub type Claims = serde_json::Map<String, serde_json::Value>;

/// Why a session was revoked (a fixed set: also a metrics label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RevokeReason {
    /// `POST /logout`.
    Logout,
    /// `POST /logout-all`.
    LogoutAll,
    /// `DELETE /sessions/{id}`.
    SessionDeleted,
    /// A rotated refresh token was presented after the grace window.
    ReuseDetected,
    /// The admin API.
    Admin,
    /// Ended by the gateway because it ran out.
    Expired,
}

impl RevokeReason {
    /// Every reason, e.g. to pre-register metric label values.
    pub const ALL: [RevokeReason; 6] = [
        RevokeReason::Logout,
        RevokeReason::LogoutAll,
        RevokeReason::SessionDeleted,
        RevokeReason::ReuseDetected,
        RevokeReason::Admin,
        RevokeReason::Expired,
    ];

    /// The stored (and metrics label) spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            RevokeReason::Logout => "logout",
            RevokeReason::LogoutAll => "logout_all",
            RevokeReason::SessionDeleted => "session_deleted",
            RevokeReason::ReuseDetected => "reuse_detected",
            RevokeReason::Admin => "admin",
            RevokeReason::Expired => "expired",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(text: &str) -> Option<RevokeReason> {
        RevokeReason::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

impl std::fmt::Display for RevokeReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// When and why a session was revoked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Revocation {
    /// When, by the clock of the node that revoked it.
    pub at: Timestamp,
    /// Why.
    pub reason: RevokeReason,
}

/// One login: the unit that is listed, revoked and referenced by the `sid`
/// claim of its access tokens.
#[derive(Clone, Debug, PartialEq)]
pub struct Session {
    /// The session id: the `sid` claim of its access tokens.
    pub id: Uuid,
    /// Whom the session is for: the `sub` of its access tokens.
    pub subject: String,
    /// Claims captured at login, copied into every access token.
    pub claims: Claims,
    /// Device description shown in session lists (`deviceInfo`); at login,
    /// from `login.device_info` or else the User-Agent.
    pub device_info: Option<String>,
    /// `User-Agent` of the login request, capped in length.
    pub user_agent: Option<String>,
    /// Client IP address the session was opened from.
    pub ip: Option<String>,
    /// When the session was opened.
    pub created_at: Timestamp,
    /// Login or latest refresh.
    pub last_used_at: Timestamp,
    /// Absolute end: no refresh token of the session works from this instant.
    pub expires_at: Timestamp,
    /// When and why it was revoked; `None` while it is not.
    pub revoked: Option<Revocation>,
}

impl Session {
    /// Neither revoked nor expired at `now`.
    pub fn is_active(&self, now: Timestamp) -> bool {
        self.revoked.is_none() && now < self.expires_at
    }
}

/// Everything needed to open a session at login.
#[derive(Clone, Debug)]
pub struct NewSession {
    /// `None`: the store generates a random (v4) id.
    pub id: Option<Uuid>,
    /// See [`Session::subject`].
    pub subject: String,
    /// See [`Session::claims`].
    pub claims: Claims,
    /// See [`Session::device_info`].
    pub device_info: Option<String>,
    /// See [`Session::user_agent`].
    pub user_agent: Option<String>,
    /// See [`Session::ip`].
    pub ip: Option<String>,
    /// SHA-256 of the generation-0 refresh token (see [`new_refresh_token`]).
    pub refresh_hash: [u8; 32],
    /// Lifetime of the session and of every refresh token it will have.
    pub session_ttl: Duration,
    /// Time of the login: `created_at`, and where `session_ttl` starts.
    pub now: Timestamp,
}

impl NewSession {
    /// The active session this request becomes once stored under `id`.
    pub(crate) fn into_session(self, id: Uuid, expires_at: Timestamp) -> Session {
        Session {
            id,
            subject: self.subject,
            claims: self.claims,
            device_info: self.device_info,
            user_agent: self.user_agent,
            ip: self.ip,
            created_at: self.now,
            last_used_at: self.now,
            expires_at,
            revoked: None,
        }
    }
}

/// What presenting a refresh token led to.
#[derive(Clone, Debug, PartialEq)]
pub enum RefreshOutcome {
    /// The token was current: it is now rotated and its successor (the
    /// `new_hash` passed in) is stored with generation `generation`.
    Rotated {
        /// The session, `last_used_at` updated.
        session: Session,
        /// Generation of the stored successor (the presented one's plus one).
        generation: i32,
    },
    /// Rotation is off: the presented token stays valid and nothing was
    /// stored except the session's `last_used_at`.
    Kept {
        /// The session, `last_used_at` updated.
        session: Session,
    },
    /// The token had been rotated less than the grace window ago (concurrent
    /// tabs): a sibling of its successor (`new_hash`, same `generation`) was
    /// stored so this caller also gets a usable token. Hand it out even when
    /// rotation is off (the token was rotated while it was on).
    GraceReplay {
        /// The session, `last_used_at` updated.
        session: Session,
        /// Generation of the stored sibling.
        generation: i32,
    },
    /// The token had been rotated longer ago than the grace window: assumed
    /// stolen, so the whole session was revoked (`reuse_detected`) in the same
    /// transaction.
    Reused {
        /// The session just revoked.
        session_id: Uuid,
        /// Its subject.
        subject: String,
    },
    /// The token or its session is past its expiry.
    Expired,
    /// The session had been revoked.
    Revoked {
        /// The revoked session.
        session_id: Uuid,
        /// Why it was revoked.
        reason: RevokeReason,
    },
    /// No token with that hash (never issued, or cleaned up).
    Unknown,
}

/// A revocation learnt from another gateway node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RevocationEvent {
    /// This session was revoked (by any node, this one included).
    Revoked(Uuid),
    /// Tokens of another issuer were revoked (by any node, this one included).
    Tokens(TokenRevocation),
    /// The notification connection was lost and is listening again;
    /// revocations made meanwhile were missed, so reload them with
    /// [`SessionStore::revoked_since`].
    Resync,
}

/// Connection-pool sizing shared by both engines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolSettings {
    /// Most connections open at once (`sessions.pool.max_connections`).
    pub max_connections: u32,
    /// How long a call waits for a connection before failing with
    /// [`StoreError::Unavailable`] (the gateway then answers 503).
    pub acquire_timeout: Duration,
}

/// Default pool size of a Postgres store.
pub const POSTGRES_MAX_CONNECTIONS: u32 = 8;

/// Default pool size of a SQLite store. SQLite has one write lock per file:
/// with more connections, concurrent writers wait in SQLite's busy handler,
/// which sleeps and retries (measured: 32 concurrent refreshes, 8
/// connections, ~830 ms p99), while with one they queue in the pool in
/// arrival order (same throughput, 26–41 ms p99).
pub const SQLITE_MAX_CONNECTIONS: u32 = 1;

/// Sized for Postgres; [`PoolSettings::for_store`] picks by engine.
impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            max_connections: POSTGRES_MAX_CONNECTIONS,
            acquire_timeout: Duration::from_secs(3),
        }
    }
}

impl PoolSettings {
    /// The default pool of the store at `url`: [`SQLITE_MAX_CONNECTIONS`]
    /// for `sqlite:…`, [`POSTGRES_MAX_CONNECTIONS`] otherwise.
    pub fn for_store(url: &str) -> PoolSettings {
        if url.starts_with("sqlite:") {
            PoolSettings::sqlite()
        } else {
            PoolSettings::default()
        }
    }

    /// The default pool of a SQLite store.
    pub fn sqlite() -> PoolSettings {
        PoolSettings {
            max_connections: SQLITE_MAX_CONNECTIONS,
            ..PoolSettings::default()
        }
    }
}

/// Session-store failures, worded for the operator. They never contain token
/// material or database passwords.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached, is shutting down, busy past its
    /// timeout, or the pool is closed. Transient: `/api/auth` answers 503.
    #[error("session store unavailable: {0}")]
    Unavailable(String),
    /// Not tried: an earlier call found the store unavailable, and calls
    /// fail fast until the session service's background probe reaches it
    /// again. Transient like [`StoreError::Unavailable`].
    #[error(
        "session store unavailable: not tried, the breaker is open until a probe reaches the store (next probe within {:?})",
        retry_after
    )]
    BreakerOpen {
        /// The probe interval: when to try again.
        retry_after: Duration,
    },
    /// A concurrent change won (unique key taken, serialisation failure,
    /// deadlock); the caller may retry.
    #[error("session store conflict: {0}")]
    Conflict(String),
    /// Stored data does not have the shape this gateway writes.
    #[error("session store holds unexpected data: {0}")]
    Corrupt(String),
    /// Applying the schema migrations failed.
    #[error("session store migration failed: {0}")]
    Migration(String),
    /// The store URL cannot be used.
    #[error("invalid session store URL `{url}`: {reason}")]
    InvalidUrl {
        /// The URL, password redacted.
        url: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// Any other error the database reported.
    #[error("session store query failed: {0}")]
    Database(String),
}

impl StoreError {
    /// True for failures that should make `/readyz` report the store down
    /// (and answer 503).
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable(_) | StoreError::BreakerOpen { .. }
        )
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> StoreError {
        use sqlx::Error as E;
        match error {
            // sqlx hands rustls' handshake errors over as I/O errors.
            E::Io(e) if tls_failure(&e) => StoreError::Unavailable(format!(
                "TLS error talking to the database: {e} (check `sslmode` and `sslrootcert` in the store URL)"
            )),
            E::Io(e) => StoreError::Unavailable(format!("I/O error talking to the database: {e}")),
            E::Tls(e) => StoreError::Unavailable(format!(
                "TLS error talking to the database: {e} (check `sslmode` and `sslrootcert` in the store URL)"
            )),
            E::Protocol(m) => StoreError::Unavailable(format!("protocol error: {m}")),
            E::PoolTimedOut => StoreError::Unavailable(
                "timed out waiting for a database connection (is the database up?)".into(),
            ),
            E::PoolClosed => StoreError::Unavailable("the connection pool is closed".into()),
            E::WorkerCrashed => {
                StoreError::Unavailable("the database connection worker crashed".into())
            }
            E::Database(db) => database_error(db.as_ref()),
            E::RowNotFound => StoreError::Corrupt("an expected row is missing".into()),
            E::ColumnNotFound(c) => StoreError::Corrupt(format!("column `{c}` is missing")),
            E::ColumnDecode { index, source } => {
                StoreError::Corrupt(format!("column {index} cannot be decoded: {source}"))
            }
            E::Decode(e) => StoreError::Corrupt(format!("a value cannot be decoded: {e}")),
            E::TypeNotFound { type_name } => {
                StoreError::Corrupt(format!("database type `{type_name}` is missing"))
            }
            E::Configuration(e) => StoreError::Database(format!("configuration error: {e}")),
            E::Migrate(e) => StoreError::Migration(e.to_string()),
            other => StoreError::Database(other.to_string()),
        }
    }
}

/// An I/O error that is a failed TLS handshake (rustls' error inside).
fn tls_failure(e: &std::io::Error) -> bool {
    e.get_ref()
        .is_some_and(|inner| inner.downcast_ref::<pingora::tls::RusTlsError>().is_some())
}

/// Classifies an error the database itself returned. Only the primary message
/// is kept: Postgres puts offending key values in the detail field, which is
/// dropped here so hashes never reach logs.
fn database_error(db: &dyn sqlx::error::DatabaseError) -> StoreError {
    let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
    let message = format!("{} (code {code})", db.message());
    let is_sqlite = db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some();
    if let (true, Ok(sqlite_code)) = (is_sqlite, code.parse::<i32>()) {
        // SQLite: the primary result code is the low byte of the extended one.
        return match sqlite_code & 0xff {
            // BUSY, LOCKED: another writer held the lock past busy_timeout.
            5 | 6 => StoreError::Unavailable(format!("database is busy: {message}")),
            // IOERR, CORRUPT, FULL, CANTOPEN, NOTADB, READONLY.
            10 | 11 | 13 | 14 | 26 | 8 => StoreError::Unavailable(message),
            // CONSTRAINT
            19 if matches!(db.kind(), sqlx::error::ErrorKind::UniqueViolation) => {
                StoreError::Conflict(message)
            }
            _ => StoreError::Database(message),
        };
    }
    match code.get(..2) {
        // connection_exception, invalid authorization (wrong credentials),
        // insufficient_resources, operator_intervention (admin or crash
        // shutdown, cannot_connect_now), invalid catalog (no such database):
        // the gateway cannot serve sessions until an operator or the server
        // fixes it.
        Some("08" | "28" | "53" | "57" | "3D") => StoreError::Unavailable(message),
        // unique_violation
        _ if code == "23505" => StoreError::Conflict(message),
        // serialization_failure, deadlock_detected
        Some("40") => StoreError::Conflict(message),
        _ => StoreError::Database(message),
    }
}

/// Storage of sessions and refresh tokens. Used as `Arc<dyn SessionStore>`;
/// every method is one round trip or one transaction.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// `"postgres"` or `"sqlite"`, for logs and `/readyz`.
    fn engine(&self) -> &'static str;

    /// Applies pending schema migrations. Idempotent, and safe to run from
    /// several gateway processes at once.
    async fn migrate(&self) -> Result<(), StoreError>;

    /// Checks the database answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Stores a session and its generation-0 refresh token in one transaction.
    async fn create_session(&self, new: NewSession) -> Result<Session, StoreError>;

    /// Exchanges a presented refresh token (see [`RefreshOutcome`]) in one
    /// transaction, serialised per session: of several concurrent exchanges
    /// of one token at most one is `Rotated`. With `rotate == false` a current
    /// token stays valid (`Kept`). `new_hash` is the successor's hash, used
    /// only for `Rotated` and `GraceReplay`. A token counts as replayed within
    /// the grace window while `now - rotated_at < grace` (so `grace == 0`
    /// treats every replay as reuse).
    async fn exchange_refresh_token(
        &self,
        presented_hash: [u8; 32],
        new_hash: [u8; 32],
        rotate: bool,
        grace: Duration,
        now: Timestamp,
    ) -> Result<RefreshOutcome, StoreError>;

    /// The session a refresh token belongs to, whatever its state (logout by
    /// refresh token). `None` when no such token is stored.
    async fn session_by_refresh_token(&self, hash: [u8; 32])
        -> Result<Option<Session>, StoreError>;

    /// A session by id, whatever its state.
    async fn get_session(&self, id: Uuid) -> Result<Option<Session>, StoreError>;

    /// Revokes a session unless it already is (expired ones too, so access
    /// tokens minted just before expiry die with it). Returns it, revoked,
    /// when this call revoked it.
    async fn revoke_session(
        &self,
        id: Uuid,
        reason: RevokeReason,
        now: Timestamp,
    ) -> Result<Option<Session>, StoreError>;

    /// Revokes a session only if it belongs to `subject` and is not revoked
    /// yet; returns whether it did. Someone else's id behaves exactly like an
    /// unknown one (`DELETE /sessions/{id}` must not be an existence oracle).
    async fn revoke_session_of_subject(
        &self,
        subject: &str,
        id: Uuid,
        reason: RevokeReason,
        now: Timestamp,
    ) -> Result<bool, StoreError>;

    /// Revokes every not yet revoked session of `subject` in one transaction;
    /// returns their ids.
    async fn revoke_all_for_subject(
        &self,
        subject: &str,
        reason: RevokeReason,
        now: Timestamp,
    ) -> Result<Vec<Uuid>, StoreError>;

    /// The subject's sessions that are neither revoked nor expired at `now`,
    /// newest first.
    async fn list_active_sessions(
        &self,
        subject: &str,
        now: Timestamp,
    ) -> Result<Vec<Session>, StoreError>;

    /// Sessions revoked at or after `since`, oldest first, with the time of
    /// revocation: to load the in-memory revoked set at start and to poll
    /// when notifications are unavailable. `revoked_at` comes from the
    /// revoking node's clock, so poll with some overlap.
    async fn revoked_since(&self, since: Timestamp) -> Result<Vec<(Uuid, Timestamp)>, StoreError>;

    /// Deletes, in one transaction, sessions that expired at or before
    /// `expired_before` or were revoked before `revoked_before` (with all
    /// their refresh tokens), and refresh tokens expired at or before
    /// `expired_before`, and token revocations and logout-token records kept
    /// until before `expired_before`. Never touches an active session. Keep
    /// `revoked_before` at least one access-token lifetime in the past so
    /// other nodes can still load the revocation. Returns the number of
    /// session and token rows deleted.
    async fn delete_expired(
        &self,
        expired_before: Timestamp,
        revoked_before: Timestamp,
    ) -> Result<u64, StoreError>;

    /// Stores a revocation of other issuers' tokens — a known one (same
    /// issuer, kind and value) keeps the later of both revocation and
    /// keep-until times — and announces it to every node (Postgres);
    /// returns the revocation now in force.
    async fn revoke_tokens(
        &self,
        revocation: TokenRevocation,
    ) -> Result<TokenRevocation, StoreError>;

    /// Token revocations made at or after `since` and kept at least until
    /// `now`, oldest first: to load them at start, after a lost
    /// notification connection and when polling.
    async fn token_revocations(
        &self,
        since: Timestamp,
        now: Timestamp,
    ) -> Result<Vec<TokenRevocation>, StoreError>;

    /// A back-channel logout, in one transaction: records the logout
    /// token's `jti` (of `revocation.iss`, remembered until `jti_kept_until`)
    /// and stores `revocation` as [`revoke_tokens`](Self::revoke_tokens)
    /// does. `None`, storing nothing, when that `jti` was recorded before (a
    /// replay).
    async fn revoke_tokens_for_logout(
        &self,
        jti: &str,
        jti_kept_until: Timestamp,
        revocation: TokenRevocation,
    ) -> Result<Option<TokenRevocation>, StoreError>;

    /// Sessions neither revoked nor expired at `now` (the `sessions_active`
    /// gauge).
    async fn count_active(&self, now: Timestamp) -> Result<u64, StoreError>;

    /// Revocations made by other nodes, pushed as they commit. `None` when the
    /// engine has no push channel (SQLite: a single node, nothing to learn).
    /// Needs a Tokio runtime; the listener stops when the receiver is dropped.
    async fn listen_revocations(
        &self,
    ) -> Result<Option<mpsc::Receiver<RevocationEvent>>, StoreError> {
        Ok(None)
    }
}

/// Opens the store named by `url`: `sqlite:PATH` (the file is created when
/// missing), `postgres://…` or `postgresql://…`. Connects eagerly, so an
/// unreachable database fails here with [`StoreError::Unavailable`]. Does
/// not migrate.
pub async fn open(url: &str) -> Result<Arc<dyn SessionStore>, StoreError> {
    open_with(url, PoolSettings::for_store(url)).await
}

/// [`open`] with explicit pool sizing.
pub async fn open_with(
    url: &str,
    settings: PoolSettings,
) -> Result<Arc<dyn SessionStore>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(
            SqliteStore::connect_with(url, true, settings).await?,
        ))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PostgresStore::connect_with(url, settings).await?))
    } else {
        Err(StoreError::InvalidUrl {
            url: redact_url(url),
            reason: "expected `sqlite:PATH`, `postgres://…` or `postgresql://…`".into(),
        })
    }
}

/// The URL with any password replaced by `***`, for messages.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_string();
    // userinfo password: scheme://user:PASSWORD@host
    if let Some(scheme_end) = out.find("://") {
        let authority_start = scheme_end + 3;
        let authority_end = out[authority_start..]
            .find(['/', '?', '#'])
            .map_or(out.len(), |i| authority_start + i);
        if let Some(at) = out[authority_start..authority_end].rfind('@') {
            let userinfo = &out[authority_start..authority_start + at];
            if let Some(colon) = userinfo.find(':') {
                let from = authority_start + colon + 1;
                out.replace_range(from..authority_start + at, "***");
            }
        }
    }
    // query parameter: ?password=… or &password=…
    if let Some(query_start) = out.find('?') {
        let (head, query) = out.split_at(query_start + 1);
        let query = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                _ => pair.to_string(),
            })
            .collect::<Vec<_>>()
            .join("&");
        out = format!("{head}{query}");
    }
    out
}

/// A refresh-token row as the exchange needs it.
#[derive(Debug)]
pub(crate) struct TokenState {
    pub generation: i32,
    pub expires_at: Timestamp,
    pub rotated_at: Option<Timestamp>,
}

/// What an exchange must do, decided from the locked rows; the engines only
/// differ in how they apply it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    Revoked(RevokeReason),
    Expired,
    /// Revoke the session: a long-rotated token came back.
    Reuse,
    /// Store a sibling of the successor with this generation.
    GraceReplay {
        generation: i32,
    },
    /// Mark the token rotated and store its successor with this generation.
    Rotate {
        generation: i32,
    },
    Keep,
}

pub(crate) fn decide(
    token: &TokenState,
    session: &Session,
    rotate: bool,
    grace: Duration,
    now: Timestamp,
) -> Decision {
    if let Some(revocation) = session.revoked {
        return Decision::Revoked(revocation.reason);
    }
    if now >= session.expires_at || now >= token.expires_at {
        return Decision::Expired;
    }
    let next = token.generation.saturating_add(1);
    match token.rotated_at {
        Some(rotated_at) if now.saturating_duration_since(rotated_at) < grace => {
            Decision::GraceReplay { generation: next }
        }
        Some(_) => Decision::Reuse,
        None if rotate => Decision::Rotate { generation: next },
        None => Decision::Keep,
    }
}

/// A [`TokenRevocation`] from its columns (an unknown kind is corrupt).
pub(crate) fn token_revocation_from_columns(
    (kind, iss, value, revoked_at_ms, keep_until_ms): (String, String, String, i64, i64),
) -> Result<TokenRevocation, StoreError> {
    let kind = RevocationKind::parse(&kind)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown token revocation kind `{kind}`")))?;
    Ok(TokenRevocation {
        kind,
        iss,
        value,
        revoked_at_ms,
        keep_until_ms,
    })
}

/// Builds a [`Session`] from stored columns, rejecting shapes the gateway
/// never writes.
#[allow(clippy::too_many_arguments)]
pub(crate) fn session_from_columns(
    id: Uuid,
    subject: String,
    claims: serde_json::Value,
    device_info: Option<String>,
    user_agent: Option<String>,
    ip: Option<String>,
    [created_at, last_used_at, expires_at]: [i64; 3],
    revoked_at: Option<i64>,
    revoked_reason: Option<String>,
) -> Result<Session, StoreError> {
    let serde_json::Value::Object(claims) = claims else {
        return Err(StoreError::Corrupt(format!(
            "session {id}: claims are not a JSON object"
        )));
    };
    let revoked = match (revoked_at, revoked_reason) {
        (None, None) => None,
        (Some(at), Some(reason)) => Some(Revocation {
            at: Timestamp::from_unix_millis(at),
            reason: RevokeReason::parse(&reason).ok_or_else(|| {
                StoreError::Corrupt(format!("session {id}: unknown revoked_reason `{reason}`"))
            })?,
        }),
        _ => {
            return Err(StoreError::Corrupt(format!(
                "session {id}: revoked_at and revoked_reason must be set together"
            )))
        }
    };
    Ok(Session {
        id,
        subject,
        claims,
        device_info,
        user_agent,
        ip,
        created_at: Timestamp::from_unix_millis(created_at),
        last_used_at: Timestamp::from_unix_millis(last_used_at),
        expires_at: Timestamp::from_unix_millis(expires_at),
        revoked,
    })
}

#[cfg(test)]
mod tests {

    #[test]
    fn revoke_reasons_are_the_metric_labels() {
        let spelled: Vec<&str> = RevokeReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(spelled, crate::metrics::REVOKE_REASONS);
    }

    use super::*;

    fn session(expires_at: i64, revoked: Option<Revocation>) -> Session {
        Session {
            id: Uuid::nil(),
            subject: "u1".into(),
            claims: Claims::new(),
            device_info: None,
            user_agent: None,
            ip: None,
            created_at: Timestamp::from_unix_millis(0),
            last_used_at: Timestamp::from_unix_millis(0),
            expires_at: Timestamp::from_unix_millis(expires_at),
            revoked,
        }
    }

    fn token(generation: i32, expires_at: i64, rotated_at: Option<i64>) -> TokenState {
        TokenState {
            generation,
            expires_at: Timestamp::from_unix_millis(expires_at),
            rotated_at: rotated_at.map(Timestamp::from_unix_millis),
        }
    }

    const GRACE: Duration = Duration::from_secs(10);

    fn at(millis: i64) -> Timestamp {
        Timestamp::from_unix_millis(millis)
    }

    #[test]
    fn current_token_rotates_to_the_next_generation_or_is_kept() {
        let s = session(100_000, None);
        assert_eq!(
            decide(&token(3, 100_000, None), &s, true, GRACE, at(50_000)),
            Decision::Rotate { generation: 4 }
        );
        assert_eq!(
            decide(&token(3, 100_000, None), &s, false, GRACE, at(50_000)),
            Decision::Keep
        );
    }

    #[test]
    fn rotated_token_is_a_grace_replay_strictly_inside_the_window_and_reuse_after() {
        let s = session(100_000, None);
        let t = token(0, 100_000, Some(40_000));
        assert_eq!(
            decide(&t, &s, true, GRACE, at(49_999)),
            Decision::GraceReplay { generation: 1 }
        );
        assert_eq!(decide(&t, &s, true, GRACE, at(50_000)), Decision::Reuse);
        assert_eq!(
            decide(&t, &s, true, Duration::ZERO, at(40_000)),
            Decision::Reuse
        );
        // A node whose clock is behind the rotating node's still sees a replay.
        assert_eq!(
            decide(&t, &s, true, GRACE, at(39_000)),
            Decision::GraceReplay { generation: 1 }
        );
        // Rotation switched off later does not excuse an old rotated token.
        assert_eq!(decide(&t, &s, false, GRACE, at(60_000)), Decision::Reuse);
    }

    #[test]
    fn revocation_wins_over_expiry_and_expiry_over_reuse() {
        let revoked = Some(Revocation {
            at: at(1),
            reason: RevokeReason::Logout,
        });
        assert_eq!(
            decide(
                &token(0, 10, Some(1)),
                &session(10, revoked),
                true,
                GRACE,
                at(99)
            ),
            Decision::Revoked(RevokeReason::Logout)
        );
        assert_eq!(
            decide(
                &token(0, 10, Some(1)),
                &session(10, None),
                true,
                GRACE,
                at(10)
            ),
            Decision::Expired
        );
        assert_eq!(
            decide(&token(0, 10, None), &session(99, None), true, GRACE, at(10)),
            Decision::Expired
        );
    }

    #[test]
    fn revoke_reasons_round_trip_their_stored_spelling() {
        for reason in RevokeReason::ALL {
            assert_eq!(RevokeReason::parse(reason.as_str()), Some(reason));
        }
        assert_eq!(RevokeReason::parse("Logout"), None);
    }

    #[test]
    fn redact_url_hides_passwords_only() {
        assert_eq!(
            redact_url("postgres://app:s3cr%40t@db:5432/portcullis?sslmode=disable"),
            "postgres://app:***@db:5432/portcullis?sslmode=disable"
        );
        assert_eq!(
            redact_url("postgresql://db/p?user=app&password=hunter2"),
            "postgresql://db/p?user=app&password=***"
        );
        assert_eq!(redact_url("postgres://app@db/p"), "postgres://app@db/p");
        assert_eq!(redact_url("sqlite:/var/lib/p.db"), "sqlite:/var/lib/p.db");
    }

    #[test]
    fn corrupt_rows_are_rejected_with_a_reason() {
        let build = |claims: serde_json::Value, at: Option<i64>, reason: Option<&str>| {
            session_from_columns(
                Uuid::nil(),
                "u".into(),
                claims,
                None,
                None,
                None,
                [0, 0, 0],
                at,
                reason.map(str::to_string),
            )
        };
        assert!(build(serde_json::json!({"role": "admin"}), None, None).is_ok());
        assert!(matches!(
            build(serde_json::json!([1]), None, None),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(
            build(serde_json::json!({}), Some(1), None),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(
            build(serde_json::json!({}), Some(1), Some("bored")),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[test]
    fn the_default_pool_has_one_connection_for_sqlite_and_eight_for_postgres() {
        for url in ["sqlite:/var/lib/portcullis/sessions.db", "sqlite::memory:"] {
            assert_eq!(PoolSettings::for_store(url).max_connections, 1, "{url}");
        }
        for url in [
            "postgres://app@db/portcullis",
            "postgresql://app@db/portcullis",
        ] {
            assert_eq!(PoolSettings::for_store(url).max_connections, 8, "{url}");
        }
        assert_eq!(
            PoolSettings::sqlite(),
            PoolSettings::for_store("sqlite:x.db")
        );
        assert_eq!(
            PoolSettings::for_store("sqlite:x.db").acquire_timeout,
            PoolSettings::default().acquire_timeout
        );
    }
}
