//! Postgres session store: shared by every gateway node.
//!
//! Exchanges lock the session row (`SELECT … FOR UPDATE`) before reading the
//! token, so concurrent exchanges of any token of one session run one after
//! the other and each sees what the previous one committed. Every
//! transaction that revokes sessions also calls `pg_notify` on
//! [`REVOCATION_CHANNEL`] with each session id; notifications are delivered
//! on commit, so other nodes never hear of a revocation that rolled back.
//!
//! Times are `timestamptz` columns, written from and read back as whole
//! milliseconds since the Unix epoch by the `ts!`/`ms!` SQL fragments below.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::migrate::{AppliedMigration, Migrate as _, Migrator};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, Postgres, Row, Transaction};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::{
    decide, migrations, redact_url, session_from_columns, token_revocation_from_columns, Decision,
    NewSession, PoolSettings, RefreshOutcome, RevocationEvent, RevokeReason, Session, SessionStore,
    StoreError, Timestamp, TokenRevocation, TokenState,
};

/// The `LISTEN/NOTIFY` channel revocations are announced on; the payload is
/// the revoked session's id, or a [`TokenRevocation`] as JSON (an object).
pub const REVOCATION_CHANNEL: &str = "portcullis_revocations";

/// Advisory-lock key serialising migrations across gateway processes
/// (ASCII "portcull"); gateways before sqlx's migrator took it too.
const MIGRATION_LOCK_KEY: i64 = 0x706f_7274_6375_6c6c;

/// Attempts of an exchange that lost a serialisation or deadlock race.
const EXCHANGE_ATTEMPTS: usize = 3;

/// Queued revocation events before the listener waits for the gateway.
const REVOCATION_QUEUE: usize = 1024;

/// Milliseconds parameter `$n` as a `timestamptz`. Round trips exactly: any
/// float rounding inside the interval product (only beyond 2^53 µs, i.e.
/// after year 2255) is microseconds, and `ms!` rounds to the millisecond.
macro_rules! ts {
    ($n:literal) => {
        concat!(
            "(TIMESTAMPTZ 'epoch' + $",
            $n,
            " * INTERVAL '1 millisecond')"
        )
    };
}

/// A `timestamptz` column as milliseconds since the epoch.
macro_rules! ms {
    ($column:literal) => {
        concat!("(EXTRACT(EPOCH FROM ", $column, ") * 1000)::int8")
    };
}

macro_rules! session_columns {
    () => {
        concat!(
            "id, subject, claims, device_info, user_agent, ip, ",
            ms!("created_at"),
            " AS created_at, ",
            ms!("last_used_at"),
            " AS last_used_at, ",
            ms!("expires_at"),
            " AS expires_at, ",
            ms!("revoked_at"),
            " AS revoked_at, revoked_reason"
        )
    };
}

/// The Postgres [`SessionStore`].
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    options: PgConnectOptions,
    settings: PoolSettings,
}

/// Only the pool state: connect options would include the password.
impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("connections", &self.pool.size())
            .field("idle", &self.pool.num_idle())
            .field("closed", &self.pool.is_closed())
            .finish()
    }
}

impl PostgresStore {
    /// Connects to `url` (`postgres://…`), failing with
    /// [`StoreError::Unavailable`] when the server cannot be reached.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, PoolSettings::default()).await
    }

    /// [`PostgresStore::connect`] with explicit pool sizing.
    pub async fn connect_with(url: &str, settings: PoolSettings) -> Result<Self, StoreError> {
        let store = Self::connect_lazy_with(url, settings)?;
        // One connection now, so a wrong URL or a down server shows at start.
        store
            .pool
            .acquire()
            .await
            .map_err(|e| match StoreError::from(e) {
                StoreError::Unavailable(m) | StoreError::Database(m) => {
                    StoreError::Unavailable(format!("cannot connect to {}: {m}", redact_url(url)))
                }
                other => other,
            })?;
        Ok(store)
    }

    /// A store that connects on first use: the gateway can start (and answer
    /// 503 on `/api/auth`) while the database is still down. Fails only on a
    /// malformed URL.
    pub fn connect_lazy(url: &str) -> Result<Self, StoreError> {
        Self::connect_lazy_with(url, PoolSettings::default())
    }

    /// [`PostgresStore::connect_lazy`] with explicit pool sizing.
    pub fn connect_lazy_with(url: &str, settings: PoolSettings) -> Result<Self, StoreError> {
        // sqlx's TLS for `sslmode=verify-ca` builds its verifier with the
        // process's default rustls provider, and panics when there is none:
        // install pingora's (idempotent) before any connection is made.
        pingora::tls::install_default_crypto_provider();
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::InvalidUrl {
                url: redact_url(url),
                reason: e.to_string(),
            })?
            .application_name("portcullis");
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections.max(1))
            .acquire_timeout(settings.acquire_timeout)
            .connect_lazy_with(options.clone());
        Ok(PostgresStore {
            pool,
            options,
            settings,
        })
    }

    /// Closes every connection; later calls fail with
    /// [`StoreError::Unavailable`]. For orderly shutdown.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn exchange_once(
        &self,
        presented_hash: [u8; 32],
        new_hash: [u8; 32],
        rotate: bool,
        grace: Duration,
        now: Timestamp,
    ) -> Result<RefreshOutcome, StoreError> {
        let mut tx = self.pool.begin().await?;
        let Some(session_id): Option<Uuid> = sqlx::query_scalar(
            "SELECT session_id FROM portcullis_refresh_tokens WHERE token_hash = $1",
        )
        .bind(&presented_hash[..])
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(RefreshOutcome::Unknown);
        };
        // Lock order everywhere: session row first, then its tokens.
        let Some(row) = sqlx::query(concat!(
            "SELECT ",
            session_columns!(),
            " FROM portcullis_sessions WHERE id = $1 FOR UPDATE"
        ))
        .bind(session_id)
        .fetch_optional(&mut *tx)
        .await?
        else {
            // Deleted by cleanup between the two statements.
            return Ok(RefreshOutcome::Unknown);
        };
        let mut session = session_from_row(&row)?;
        // A new statement, so it sees what the previous lock holder committed.
        let Some(row) = sqlx::query(concat!(
            "SELECT generation, ",
            ms!("expires_at"),
            " AS expires_at, ",
            ms!("rotated_at"),
            " AS rotated_at FROM portcullis_refresh_tokens WHERE token_hash = $1"
        ))
        .bind(&presented_hash[..])
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(RefreshOutcome::Unknown);
        };
        let token = TokenState {
            generation: row.try_get("generation")?,
            expires_at: Timestamp::from_unix_millis(row.try_get("expires_at")?),
            rotated_at: row
                .try_get::<Option<i64>, _>("rotated_at")?
                .map(Timestamp::from_unix_millis),
        };

        let decision = decide(&token, &session, rotate, grace, now);
        let generation = match decision {
            Decision::Revoked(reason) => return Ok(RefreshOutcome::Revoked { session_id, reason }),
            Decision::Expired => return Ok(RefreshOutcome::Expired),
            Decision::Reuse => {
                sqlx::query(concat!(
                    "UPDATE portcullis_sessions SET revoked_at = ",
                    ts!(1),
                    ", revoked_reason = $2 WHERE id = $3 AND revoked_at IS NULL"
                ))
                .bind(now.unix_millis())
                .bind(RevokeReason::ReuseDetected.as_str())
                .bind(session_id)
                .execute(&mut *tx)
                .await?;
                notify_revoked(&mut tx, &[session_id]).await?;
                tx.commit().await?;
                return Ok(RefreshOutcome::Reused {
                    session_id,
                    subject: session.subject,
                });
            }
            Decision::Rotate { generation } => {
                let marked = sqlx::query(concat!(
                    "UPDATE portcullis_refresh_tokens SET rotated_at = ",
                    ts!(1),
                    " WHERE token_hash = $2 AND rotated_at IS NULL"
                ))
                .bind(now.unix_millis())
                .bind(&presented_hash[..])
                .execute(&mut *tx)
                .await?;
                if marked.rows_affected() != 1 {
                    return Err(StoreError::Conflict(
                        "the refresh token was rotated concurrently".into(),
                    ));
                }
                Some(generation)
            }
            Decision::GraceReplay { generation } => Some(generation),
            Decision::Keep => None,
        };
        if let Some(generation) = generation {
            sqlx::query(concat!(
                "INSERT INTO portcullis_refresh_tokens
                     (token_hash, session_id, generation, created_at, expires_at, parent_hash)
                 VALUES ($1, $2, $3, ",
                ts!(4),
                ", ",
                ts!(5),
                ", $6)"
            ))
            .bind(&new_hash[..])
            .bind(session_id)
            .bind(generation)
            .bind(now.unix_millis())
            .bind(session.expires_at.unix_millis())
            .bind(&presented_hash[..])
            .execute(&mut *tx)
            .await?;
        }
        session.last_used_at = session.last_used_at.max(now);
        sqlx::query(concat!(
            "UPDATE portcullis_sessions SET last_used_at = ",
            ts!(1),
            " WHERE id = $2"
        ))
        .bind(session.last_used_at.unix_millis())
        .bind(session_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(match decision {
            Decision::Rotate { generation } => RefreshOutcome::Rotated {
                session,
                generation,
            },
            Decision::GraceReplay { generation } => RefreshOutcome::GraceReplay {
                session,
                generation,
            },
            _ => RefreshOutcome::Kept { session },
        })
    }
}

fn session_from_row(row: &PgRow) -> Result<Session, StoreError> {
    let claims: Json<serde_json::Value> = row.try_get("claims")?;
    session_from_columns(
        row.try_get("id")?,
        row.try_get("subject")?,
        claims.0,
        row.try_get("device_info")?,
        row.try_get("user_agent")?,
        row.try_get("ip")?,
        [
            row.try_get("created_at")?,
            row.try_get("last_used_at")?,
            row.try_get("expires_at")?,
        ],
        row.try_get("revoked_at")?,
        row.try_get("revoked_reason")?,
    )
}

/// Stores a token revocation (a known one keeps the later times) and
/// announces the stored form to every listening node once `tx` commits.
async fn upsert_token_revocation(
    tx: &mut Transaction<'static, Postgres>,
    revocation: &TokenRevocation,
) -> Result<TokenRevocation, StoreError> {
    let row: (String, String, String, i64, i64) = sqlx::query_as(concat!(
        "INSERT INTO portcullis_token_revocations AS r (kind, iss, value, revoked_at, keep_until) VALUES ($1, $2, $3, ",
        ts!(4),
        ", ",
        ts!(5),
        ") ON CONFLICT (iss, kind, value) DO UPDATE SET",
        " revoked_at = GREATEST(r.revoked_at, EXCLUDED.revoked_at),",
        " keep_until = GREATEST(r.keep_until, EXCLUDED.keep_until)",
        " RETURNING kind, iss, value, ",
        ms!("revoked_at"),
        ", ",
        ms!("keep_until")
    ))
    .bind(revocation.kind.as_str())
    .bind(&revocation.iss)
    .bind(&revocation.value)
    .bind(revocation.revoked_at_ms)
    .bind(revocation.keep_until_ms)
    .fetch_one(&mut **tx)
    .await?;
    let stored = token_revocation_from_columns(row)?;
    let payload = serde_json::to_string(&stored)
        .map_err(|e| StoreError::Corrupt(format!("cannot announce a revocation: {e}")))?;
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(REVOCATION_CHANNEL)
        .bind(payload)
        .execute(&mut **tx)
        .await?;
    Ok(stored)
}

/// Announces revocations to every listening node once `tx` commits.
async fn notify_revoked(
    tx: &mut Transaction<'static, Postgres>,
    ids: &[Uuid],
) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query("SELECT pg_notify($1, id::text) FROM unnest($2::uuid[]) AS revoked(id)")
        .bind(REVOCATION_CHANNEL)
        .bind(ids)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Records in `_sqlx_migrations` what a gateway before sqlx's migrator
/// applied (its [`migrations::LEGACY_TABLE`], if any), keeping the time it was
/// applied; returns what `_sqlx_migrations` holds then.
async fn adopt_legacy_bookkeeping(
    tx: &mut Transaction<'static, Postgres>,
    migrator: &Migrator,
) -> Result<Vec<AppliedMigration>, StoreError> {
    let fail = |e| migrations::error("postgres", migrator, e);
    let recorded = tx
        .list_applied_migrations(&migrator.table_name)
        .await
        .map_err(fail)?;
    let legacy_exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(migrations::LEGACY_TABLE)
        .fetch_one(&mut **tx)
        .await?;
    if !legacy_exists {
        return Ok(recorded);
    }
    let legacy: Vec<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT version, checksum FROM portcullis_schema_migrations")
            .fetch_all(&mut **tx)
            .await?;
    let adopt = migrations::adoptable("postgres", migrator, &legacy, &recorded)?;
    if adopt.is_empty() {
        return Ok(recorded);
    }
    for migration in adopt {
        sqlx::query(
            "INSERT INTO _sqlx_migrations
                 (version, description, installed_on, success, checksum, execution_time)
             SELECT version, $2, applied_at, TRUE, $3, -1
             FROM portcullis_schema_migrations WHERE version = $1",
        )
        .bind(migration.version)
        .bind(&*migration.description)
        .bind(&*migration.checksum)
        .execute(&mut **tx)
        .await?;
        tracing::info!(
            engine = "postgres",
            version = migration.version,
            description = %migration.description,
            "recorded a migration applied before sqlx's migrator in _sqlx_migrations"
        );
    }
    tx.list_applied_migrations(&migrator.table_name)
        .await
        .map_err(fail)
}

#[async_trait]
impl SessionStore for PostgresStore {
    fn engine(&self) -> &'static str {
        "postgres"
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let migrator = migrations::postgres().await?;
        let fail = |e| migrations::error("postgres", &migrator, e);
        // Postgres DDL is transactional: the whole run commits or nothing
        // does, and the transaction-scoped advisory lock is released either
        // way, so a failed run cannot leave a lock behind. sqlx applies each
        // migration in a savepoint of this transaction.
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(MIGRATION_LOCK_KEY)
            .execute(&mut *tx)
            .await?;
        tx.ensure_migrations_table(&migrator.table_name)
            .await
            .map_err(fail)?;
        let before = adopt_legacy_bookkeeping(&mut tx, &migrator).await?;
        migrations::run(&migrator, &mut *tx).await.map_err(fail)?;
        let after = tx
            .list_applied_migrations(&migrator.table_name)
            .await
            .map_err(fail)?;
        tx.commit().await?;
        migrations::report("postgres", &migrator, &before, &after);
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn create_session(&self, new: NewSession) -> Result<Session, StoreError> {
        let id = new.id.unwrap_or_else(Uuid::new_v4);
        let expires_at = new.now.saturating_add(new.session_ttl);
        let mut tx = self.pool.begin().await?;
        sqlx::query(concat!(
            "INSERT INTO portcullis_sessions
                 (id, subject, claims, device_info, user_agent, ip,
                  created_at, last_used_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, ",
            ts!(7),
            ", ",
            ts!(7),
            ", ",
            ts!(8),
            ")"
        ))
        .bind(id)
        .bind(&new.subject)
        .bind(Json(&new.claims))
        .bind(&new.device_info)
        .bind(&new.user_agent)
        .bind(&new.ip)
        .bind(new.now.unix_millis())
        .bind(expires_at.unix_millis())
        .execute(&mut *tx)
        .await?;
        sqlx::query(concat!(
            "INSERT INTO portcullis_refresh_tokens
                 (token_hash, session_id, generation, created_at, expires_at)
             VALUES ($1, $2, 0, ",
            ts!(3),
            ", ",
            ts!(4),
            ")"
        ))
        .bind(&new.refresh_hash[..])
        .bind(id)
        .bind(new.now.unix_millis())
        .bind(expires_at.unix_millis())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(new.into_session(id, expires_at))
    }

    async fn exchange_refresh_token(
        &self,
        presented_hash: [u8; 32],
        new_hash: [u8; 32],
        rotate: bool,
        grace: Duration,
        now: Timestamp,
    ) -> Result<RefreshOutcome, StoreError> {
        let mut attempt = 1;
        loop {
            match self
                .exchange_once(presented_hash, new_hash, rotate, grace, now)
                .await
            {
                Err(StoreError::Conflict(reason)) if attempt < EXCHANGE_ATTEMPTS => {
                    tracing::debug!(%reason, attempt, "retrying refresh-token exchange");
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    async fn session_by_refresh_token(
        &self,
        hash: [u8; 32],
    ) -> Result<Option<Session>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            session_columns!(),
            " FROM portcullis_sessions WHERE id =
                 (SELECT session_id FROM portcullis_refresh_tokens WHERE token_hash = $1)"
        ))
        .bind(&hash[..])
        .fetch_optional(&self.pool)
        .await?
        .map(|row| session_from_row(&row))
        .transpose()
    }

    async fn get_session(&self, id: Uuid) -> Result<Option<Session>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            session_columns!(),
            " FROM portcullis_sessions WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .map(|row| session_from_row(&row))
        .transpose()
    }

    async fn revoke_session(
        &self,
        id: Uuid,
        reason: RevokeReason,
        now: Timestamp,
    ) -> Result<Option<Session>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let session = sqlx::query(concat!(
            "UPDATE portcullis_sessions SET revoked_at = ",
            ts!(1),
            ", revoked_reason = $2 WHERE id = $3 AND revoked_at IS NULL RETURNING ",
            session_columns!()
        ))
        .bind(now.unix_millis())
        .bind(reason.as_str())
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .map(|row| session_from_row(&row))
        .transpose()?;
        if session.is_some() {
            notify_revoked(&mut tx, &[id]).await?;
        }
        tx.commit().await?;
        Ok(session)
    }

    async fn revoke_session_of_subject(
        &self,
        subject: &str,
        id: Uuid,
        reason: RevokeReason,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(concat!(
            "UPDATE portcullis_sessions SET revoked_at = ",
            ts!(1),
            ", revoked_reason = $2 WHERE id = $3 AND subject = $4 AND revoked_at IS NULL"
        ))
        .bind(now.unix_millis())
        .bind(reason.as_str())
        .bind(id)
        .bind(subject)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if done {
            notify_revoked(&mut tx, &[id]).await?;
        }
        tx.commit().await?;
        Ok(done)
    }

    async fn revoke_all_for_subject(
        &self,
        subject: &str,
        reason: RevokeReason,
        now: Timestamp,
    ) -> Result<Vec<Uuid>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let ids: Vec<Uuid> = sqlx::query_scalar(concat!(
            "UPDATE portcullis_sessions SET revoked_at = ",
            ts!(1),
            ", revoked_reason = $2 WHERE subject = $3 AND revoked_at IS NULL RETURNING id"
        ))
        .bind(now.unix_millis())
        .bind(reason.as_str())
        .bind(subject)
        .fetch_all(&mut *tx)
        .await?;
        notify_revoked(&mut tx, &ids).await?;
        tx.commit().await?;
        Ok(ids)
    }

    async fn list_active_sessions(
        &self,
        subject: &str,
        now: Timestamp,
    ) -> Result<Vec<Session>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            session_columns!(),
            " FROM portcullis_sessions
             WHERE subject = $1 AND revoked_at IS NULL AND expires_at > ",
            ts!(2),
            " ORDER BY portcullis_sessions.created_at DESC, id"
        ))
        .bind(subject)
        .bind(now.unix_millis())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(session_from_row)
        .collect()
    }

    async fn revoked_since(&self, since: Timestamp) -> Result<Vec<(Uuid, Timestamp)>, StoreError> {
        let rows: Vec<(Uuid, i64)> = sqlx::query_as(concat!(
            "SELECT id, ",
            ms!("revoked_at"),
            " FROM portcullis_sessions WHERE revoked_at >= ",
            ts!(1),
            " ORDER BY portcullis_sessions.revoked_at, id"
        ))
        .bind(since.unix_millis())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, at)| (id, Timestamp::from_unix_millis(at)))
            .collect())
    }

    async fn delete_expired(
        &self,
        expired_before: Timestamp,
        revoked_before: Timestamp,
    ) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        // Lock the doomed sessions before touching their tokens: the same
        // order as an exchange, so the two never deadlock.
        let doomed: Vec<Uuid> = sqlx::query_scalar(concat!(
            "SELECT id FROM portcullis_sessions WHERE expires_at <= ",
            ts!(1),
            " OR revoked_at < ",
            ts!(2),
            " ORDER BY id FOR UPDATE"
        ))
        .bind(expired_before.unix_millis())
        .bind(revoked_before.unix_millis())
        .fetch_all(&mut *tx)
        .await?;
        let tokens = sqlx::query(concat!(
            "DELETE FROM portcullis_refresh_tokens WHERE session_id = ANY($2) OR expires_at <= ",
            ts!(1)
        ))
        .bind(expired_before.unix_millis())
        .bind(&doomed)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let sessions = sqlx::query("DELETE FROM portcullis_sessions WHERE id = ANY($1)")
            .bind(&doomed)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let mut others = 0;
        for table in ["portcullis_token_revocations", "portcullis_logout_tokens"] {
            others += sqlx::query(AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE keep_until < {}",
                ts!(1)
            )))
            .bind(expired_before.unix_millis())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        tx.commit().await?;
        Ok(tokens + sessions + others)
    }

    async fn revoke_tokens(
        &self,
        revocation: TokenRevocation,
    ) -> Result<TokenRevocation, StoreError> {
        let mut tx = self.pool.begin().await?;
        let stored = upsert_token_revocation(&mut tx, &revocation).await?;
        tx.commit().await?;
        Ok(stored)
    }

    async fn revoke_tokens_for_logout(
        &self,
        jti: &str,
        jti_kept_until: Timestamp,
        revocation: TokenRevocation,
    ) -> Result<Option<TokenRevocation>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let recorded = sqlx::query(concat!(
            "INSERT INTO portcullis_logout_tokens (iss, jti, used_at, keep_until) VALUES ($1, $2, ",
            ts!(3),
            ", ",
            ts!(4),
            ") ON CONFLICT (iss, jti) DO NOTHING"
        ))
        .bind(&revocation.iss)
        .bind(jti)
        .bind(revocation.revoked_at_ms)
        .bind(jti_kept_until.unix_millis())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if recorded == 0 {
            return Ok(None);
        }
        let stored = upsert_token_revocation(&mut tx, &revocation).await?;
        tx.commit().await?;
        Ok(Some(stored))
    }

    async fn token_revocations(
        &self,
        since: Timestamp,
        now: Timestamp,
    ) -> Result<Vec<TokenRevocation>, StoreError> {
        let rows: Vec<(String, String, String, i64, i64)> = sqlx::query_as(concat!(
            "SELECT kind, iss, value, ",
            ms!("revoked_at"),
            ", ",
            ms!("keep_until"),
            " FROM portcullis_token_revocations WHERE revoked_at >= ",
            ts!(1),
            " AND keep_until >= ",
            ts!(2),
            " ORDER BY revoked_at, iss, kind, value"
        ))
        .bind(since.unix_millis())
        .bind(now.unix_millis())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(token_revocation_from_columns)
            .collect()
    }

    async fn count_active(&self, now: Timestamp) -> Result<u64, StoreError> {
        let count: i64 = sqlx::query_scalar(concat!(
            "SELECT count(*) FROM portcullis_sessions WHERE revoked_at IS NULL AND expires_at > ",
            ts!(1)
        ))
        .bind(now.unix_millis())
        .fetch_one(&self.pool)
        .await?;
        Ok(count.unsigned_abs())
    }

    /// Listens on [`REVOCATION_CHANNEL`] over a dedicated connection (so a
    /// busy pool never delays revocations). A lost connection is
    /// re-established with backoff and reported as [`RevocationEvent::Resync`]
    /// once listening again. Fails only if the first connection cannot be
    /// made.
    async fn listen_revocations(
        &self,
    ) -> Result<Option<mpsc::Receiver<RevocationEvent>>, StoreError> {
        // One long-lived connection: never recycled for age or idleness.
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .max_lifetime(None)
            .idle_timeout(None)
            .acquire_timeout(self.settings.acquire_timeout)
            .connect_lazy_with(
                self.options
                    .clone()
                    .application_name("portcullis-revocations"),
            );
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.listen(REVOCATION_CHANNEL).await?;
        let (events, receiver) = mpsc::channel(REVOCATION_QUEUE);
        tokio::spawn(forward_revocations(listener, events));
        Ok(Some(receiver))
    }
}

/// The listener task: forwards notifications until the receiver is dropped.
async fn forward_revocations(mut listener: PgListener, events: mpsc::Sender<RevocationEvent>) {
    const MIN_BACKOFF: Duration = Duration::from_millis(100);
    const MAX_BACKOFF: Duration = Duration::from_secs(5);
    let mut backoff = MIN_BACKOFF;
    let mut lost = false;
    loop {
        if lost {
            // Any statement makes the listener reconnect and re-LISTEN; only
            // then can the gateway reload what it missed without a new gap.
            if sqlx::query("SELECT 1").execute(&mut listener).await.is_ok() {
                lost = false;
                backoff = MIN_BACKOFF;
                tracing::info!("revocation listener reconnected");
                if events.send(RevocationEvent::Resync).await.is_err() {
                    return;
                }
            }
        }
        let received = tokio::select! {
            _ = events.closed() => return,
            received = listener.try_recv() => received,
        };
        let event = match received {
            Ok(Some(notification)) if notification.payload().starts_with('{') => {
                match serde_json::from_str::<TokenRevocation>(notification.payload()) {
                    Ok(revocation) => RevocationEvent::Tokens(revocation),
                    Err(error) => {
                        tracing::warn!(
                            channel = REVOCATION_CHANNEL,
                            %error,
                            "ignoring a token revocation notification that cannot be read"
                        );
                        continue;
                    }
                }
            }
            Ok(Some(notification)) => match Uuid::parse_str(notification.payload()) {
                Ok(id) => RevocationEvent::Revoked(id),
                Err(_) => {
                    tracing::warn!(
                        channel = REVOCATION_CHANNEL,
                        "ignoring a revocation notification whose payload is not a session id"
                    );
                    continue;
                }
            },
            // The connection dropped and was re-established (and re-LISTENed).
            Ok(None) => {
                lost = false;
                RevocationEvent::Resync
            }
            Err(error) => {
                let error = StoreError::from(error);
                tracing::warn!(%error, retry_in = ?backoff, "revocation listener lost its connection");
                lost = true;
                tokio::select! {
                    _ = events.closed() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        if events.send(event).await.is_err() {
            return;
        }
    }
}
