//! SQLite session store: one file, one gateway node, zero setup.
//!
//! The file runs in WAL mode (readers never block the writer) with foreign
//! keys on and a 5 s busy timeout. Every transaction that writes starts with
//! `BEGIN IMMEDIATE`, taking SQLite's single write lock up front: concurrent
//! exchanges of one refresh token queue behind each other instead of both
//! reading "not rotated yet", and no transaction has to upgrade a read lock
//! (which SQLite resolves by failing with SQLITE_BUSY at once).

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
};
use sqlx::{Executor as _, Row, Sqlite, Transaction};
use uuid::Uuid;

use super::{
    decide, migrations, redact_url, session_from_columns, Decision, NewSession, PoolSettings,
    RefreshOutcome, RevokeReason, Session, SessionStore, StoreError, Timestamp, TokenState,
};

/// How long a writer waits for another one before giving up with
/// [`StoreError::Unavailable`].
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const SESSION_COLUMNS: &str = "id, subject, claims, device_info, user_agent, ip, \
     created_at, last_used_at, expires_at, revoked_at, revoked_reason";

/// The SQLite [`SessionStore`].
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

/// Only the pool state, like [`PostgresStore`](super::PostgresStore)'s.
impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("connections", &self.pool.size())
            .field("idle", &self.pool.num_idle())
            .field("closed", &self.pool.is_closed())
            .finish()
    }
}

impl SqliteStore {
    /// Opens `path_or_url` (a file path or `sqlite:PATH[?options]`), creating
    /// the file when `create_if_missing`. Connects once to fail early. One
    /// connection ([`PoolSettings::sqlite`]).
    pub async fn connect(path_or_url: &str, create_if_missing: bool) -> Result<Self, StoreError> {
        Self::connect_with(path_or_url, create_if_missing, PoolSettings::sqlite()).await
    }

    /// [`SqliteStore::connect`] with explicit pool sizing.
    pub async fn connect_with(
        path_or_url: &str,
        create_if_missing: bool,
        settings: PoolSettings,
    ) -> Result<Self, StoreError> {
        let options = if path_or_url.starts_with("sqlite:") {
            SqliteConnectOptions::from_str(path_or_url).map_err(|e| StoreError::InvalidUrl {
                url: redact_url(path_or_url),
                reason: e.to_string(),
            })?
        } else {
            SqliteConnectOptions::new().filename(path_or_url)
        };
        let options = options
            .create_if_missing(create_if_missing)
            .journal_mode(SqliteJournalMode::Wal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(settings.max_connections.max(1))
            .acquire_timeout(settings.acquire_timeout)
            .connect_with(options)
            .await
            .map_err(|e| match StoreError::from(e) {
                StoreError::Unavailable(m) | StoreError::Database(m) => {
                    StoreError::Unavailable(format!(
                        "cannot open SQLite database {}: {m}",
                        redact_url(path_or_url)
                    ))
                }
                other => other,
            })?;
        Ok(SqliteStore { pool })
    }

    /// Closes every connection; later calls fail with
    /// [`StoreError::Unavailable`]. For orderly shutdown.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }
}

fn session_from_row(row: &SqliteRow) -> Result<Session, StoreError> {
    let id_text: String = row.try_get("id")?;
    let id = Uuid::parse_str(&id_text)
        .map_err(|_| StoreError::Corrupt(format!("session id `{id_text}` is not a UUID")))?;
    let claims_text: String = row.try_get("claims")?;
    let claims = serde_json::from_str(&claims_text)
        .map_err(|e| StoreError::Corrupt(format!("session {id}: claims are not JSON: {e}")))?;
    session_from_columns(
        id,
        row.try_get("subject")?,
        claims,
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

fn uuid_from_text(text: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(text)
        .map_err(|_| StoreError::Corrupt(format!("session id `{text}` is not a UUID")))
}

async fn session_in(
    tx: &mut Transaction<'static, Sqlite>,
    id: &str,
) -> Result<Option<Session>, StoreError> {
    let sql = format!("SELECT {SESSION_COLUMNS} FROM portcullis_sessions WHERE id = ?");
    sqlx::query(&sql)
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
        .map(|row| session_from_row(&row))
        .transpose()
}

#[async_trait]
impl SessionStore for SqliteStore {
    fn engine(&self) -> &'static str {
        "sqlite"
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        // The write lock taken by BEGIN IMMEDIATE makes a second process wait
        // and then find everything applied.
        let mut tx = self.begin_write().await?;
        (&mut *tx)
            .execute(sqlx::raw_sql(
                "CREATE TABLE IF NOT EXISTS portcullis_schema_migrations (
                 version     INTEGER NOT NULL PRIMARY KEY,
                 description TEXT    NOT NULL,
                 checksum    BLOB    NOT NULL,
                 applied_at  INTEGER NOT NULL
             ) STRICT",
            ))
            .await?;
        let applied: Vec<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT version, checksum FROM portcullis_schema_migrations")
                .fetch_all(&mut *tx)
                .await?;
        for migration in migrations::pending("sqlite", migrations::SQLITE, &applied)? {
            (&mut *tx)
                .execute(sqlx::raw_sql(migration.sql))
                .await
                .map_err(|e| {
                    StoreError::Migration(format!(
                        "sqlite migration {} ({}): {}",
                        migration.version,
                        migration.description,
                        StoreError::from(e)
                    ))
                })?;
            sqlx::query(
                "INSERT INTO portcullis_schema_migrations (version, description, checksum, applied_at)
                 VALUES (?, ?, ?, ?)",
            )
            .bind(migration.version)
            .bind(migration.description)
            .bind(migration.checksum())
            .bind(Timestamp::now().unix_millis())
            .execute(&mut *tx)
            .await?;
            tracing::info!(
                engine = "sqlite",
                version = migration.version,
                description = migration.description,
                "applied session store migration"
            );
        }
        tx.commit().await?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn create_session(&self, new: NewSession) -> Result<Session, StoreError> {
        let id = new.id.unwrap_or_else(Uuid::new_v4);
        let expires_at = new.now.saturating_add(new.session_ttl);
        let claims = serde_json::Value::Object(new.claims.clone());
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO portcullis_sessions
                 (id, subject, claims, device_info, user_agent, ip,
                  created_at, last_used_at, expires_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(id.to_string())
        .bind(&new.subject)
        .bind(claims.to_string())
        .bind(&new.device_info)
        .bind(&new.user_agent)
        .bind(&new.ip)
        .bind(new.now.unix_millis())
        .bind(new.now.unix_millis())
        .bind(expires_at.unix_millis())
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO portcullis_refresh_tokens
                 (token_hash, session_id, generation, created_at, expires_at)
             VALUES (?, ?, 0, ?, ?)",
        )
        .bind(&new.refresh_hash[..])
        .bind(id.to_string())
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
        let mut tx = self.begin_write().await?;
        let Some(row) = sqlx::query(
            "SELECT session_id, generation, expires_at, rotated_at
             FROM portcullis_refresh_tokens WHERE token_hash = ?",
        )
        .bind(&presented_hash[..])
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(RefreshOutcome::Unknown);
        };
        let session_id: String = row.try_get("session_id")?;
        let token = TokenState {
            generation: row.try_get("generation")?,
            expires_at: Timestamp::from_unix_millis(row.try_get("expires_at")?),
            rotated_at: row
                .try_get::<Option<i64>, _>("rotated_at")?
                .map(Timestamp::from_unix_millis),
        };
        let Some(mut session) = session_in(&mut tx, &session_id).await? else {
            return Err(StoreError::Corrupt(format!(
                "refresh token of session {session_id} has no session row"
            )));
        };

        let decision = decide(&token, &session, rotate, grace, now);
        let generation = match decision {
            Decision::Revoked(reason) => {
                return Ok(RefreshOutcome::Revoked {
                    session_id: session.id,
                    reason,
                })
            }
            Decision::Expired => return Ok(RefreshOutcome::Expired),
            Decision::Reuse => {
                sqlx::query(
                    "UPDATE portcullis_sessions SET revoked_at = ?, revoked_reason = ?
                     WHERE id = ? AND revoked_at IS NULL",
                )
                .bind(now.unix_millis())
                .bind(RevokeReason::ReuseDetected.as_str())
                .bind(&session_id)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                return Ok(RefreshOutcome::Reused {
                    session_id: session.id,
                    subject: session.subject,
                });
            }
            Decision::Rotate { generation } => {
                // The write lock makes this unconditional in practice; the
                // condition keeps "at most one successor per rotation" true
                // even if the locking ever changes.
                let marked = sqlx::query(
                    "UPDATE portcullis_refresh_tokens SET rotated_at = ?
                     WHERE token_hash = ? AND rotated_at IS NULL",
                )
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
            sqlx::query(
                "INSERT INTO portcullis_refresh_tokens
                     (token_hash, session_id, generation, created_at, expires_at, parent_hash)
                 VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(&new_hash[..])
            .bind(&session_id)
            .bind(generation)
            .bind(now.unix_millis())
            .bind(session.expires_at.unix_millis())
            .bind(&presented_hash[..])
            .execute(&mut *tx)
            .await?;
        }
        session.last_used_at = session.last_used_at.max(now);
        sqlx::query("UPDATE portcullis_sessions SET last_used_at = ? WHERE id = ?")
            .bind(session.last_used_at.unix_millis())
            .bind(&session_id)
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

    async fn session_by_refresh_token(
        &self,
        hash: [u8; 32],
    ) -> Result<Option<Session>, StoreError> {
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM portcullis_sessions
             WHERE id = (SELECT session_id FROM portcullis_refresh_tokens WHERE token_hash = ?)"
        );
        sqlx::query(&sql)
            .bind(&hash[..])
            .fetch_optional(&self.pool)
            .await?
            .map(|row| session_from_row(&row))
            .transpose()
    }

    async fn get_session(&self, id: Uuid) -> Result<Option<Session>, StoreError> {
        let sql = format!("SELECT {SESSION_COLUMNS} FROM portcullis_sessions WHERE id = ?");
        sqlx::query(&sql)
            .bind(id.to_string())
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
        let sql = format!(
            "UPDATE portcullis_sessions SET revoked_at = ?, revoked_reason = ?
             WHERE id = ? AND revoked_at IS NULL
             RETURNING {SESSION_COLUMNS}"
        );
        sqlx::query(&sql)
            .bind(now.unix_millis())
            .bind(reason.as_str())
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .map(|row| session_from_row(&row))
            .transpose()
    }

    async fn revoke_session_of_subject(
        &self,
        subject: &str,
        id: Uuid,
        reason: RevokeReason,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE portcullis_sessions SET revoked_at = ?, revoked_reason = ?
             WHERE id = ? AND subject = ? AND revoked_at IS NULL",
        )
        .bind(now.unix_millis())
        .bind(reason.as_str())
        .bind(id.to_string())
        .bind(subject)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn revoke_all_for_subject(
        &self,
        subject: &str,
        reason: RevokeReason,
        now: Timestamp,
    ) -> Result<Vec<Uuid>, StoreError> {
        // One statement is one transaction.
        let ids: Vec<String> = sqlx::query_scalar(
            "UPDATE portcullis_sessions SET revoked_at = ?, revoked_reason = ?
             WHERE subject = ? AND revoked_at IS NULL
             RETURNING id",
        )
        .bind(now.unix_millis())
        .bind(reason.as_str())
        .bind(subject)
        .fetch_all(&self.pool)
        .await?;
        ids.iter().map(|id| uuid_from_text(id)).collect()
    }

    async fn list_active_sessions(
        &self,
        subject: &str,
        now: Timestamp,
    ) -> Result<Vec<Session>, StoreError> {
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM portcullis_sessions
             WHERE subject = ? AND revoked_at IS NULL AND expires_at > ?
             ORDER BY created_at DESC, id"
        );
        sqlx::query(&sql)
            .bind(subject)
            .bind(now.unix_millis())
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(session_from_row)
            .collect()
    }

    async fn revoked_since(&self, since: Timestamp) -> Result<Vec<(Uuid, Timestamp)>, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT id, revoked_at FROM portcullis_sessions
             WHERE revoked_at >= ? ORDER BY revoked_at, id",
        )
        .bind(since.unix_millis())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|(id, at)| Ok((uuid_from_text(id)?, Timestamp::from_unix_millis(*at))))
            .collect()
    }

    async fn delete_expired(
        &self,
        expired_before: Timestamp,
        revoked_before: Timestamp,
    ) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        let tokens = sqlx::query(
            "DELETE FROM portcullis_refresh_tokens
             WHERE expires_at <= ?1
                OR session_id IN (SELECT id FROM portcullis_sessions
                                  WHERE expires_at <= ?1 OR revoked_at < ?2)",
        )
        .bind(expired_before.unix_millis())
        .bind(revoked_before.unix_millis())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let sessions = sqlx::query(
            "DELETE FROM portcullis_sessions WHERE expires_at <= ?1 OR revoked_at < ?2",
        )
        .bind(expired_before.unix_millis())
        .bind(revoked_before.unix_millis())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(tokens + sessions)
    }

    async fn count_active(&self, now: Timestamp) -> Result<u64, StoreError> {
        let count: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM portcullis_sessions
             WHERE revoked_at IS NULL AND expires_at > ?",
        )
        .bind(now.unix_millis())
        .fetch_one(&self.pool)
        .await?;
        Ok(count.unsigned_abs())
    }
}
